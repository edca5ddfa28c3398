// load-monitor's chart page: draws /report/<name> as two SVG charts and redraws every 5 s.
// Everything from the server is set as text or as an attribute, never parsed as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600, HEIGHT = 220, LEFT = 44, RIGHT = 8, TOP = 10, BOTTOM = 28;
const MINUTE = 60000, HOUR = 3600000;
const EVERY = 5000;

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function label(ms, withDay) {
  const iso = new Date(ms).toISOString();
  return withDay ? iso.slice(5, 10) + " " + iso.slice(11, 16) : iso.slice(11, 16);
}

// rows: [[period start, cpu, ram], ...]; the window is `slots` periods of `step` ms up to `now`.
function draw(svg, rows, now, step, slots) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const end = Math.floor(now / step) * step;
  const start = end - (slots - 1) * step;
  const top = Math.max(1, ...rows.map((r) => Math.max(r[1], r[2])));
  const x = (t) => LEFT + ((t - start) / Math.max(step, (slots - 1) * step)) * (WIDTH - LEFT - RIGHT);
  const y = (v) => HEIGHT - BOTTOM - (v / top) * (HEIGHT - TOP - BOTTOM);
  svg.appendChild(el("line", { class: "axis", x1: LEFT, y1: y(0), x2: WIDTH - RIGHT, y2: y(0) }));
  svg.appendChild(el("line", { class: "axis", x1: LEFT, y1: TOP, x2: LEFT, y2: y(0) }));
  svg.appendChild(el("text", { class: "tick", x: LEFT - 4, y: TOP + 8, "text-anchor": "end" }, String(+top.toPrecision(4))));
  svg.appendChild(el("text", { class: "tick", x: LEFT - 4, y: y(0), "text-anchor": "end" }, "0"));
  const withDay = step === HOUR;
  svg.appendChild(el("text", { class: "tick", x: LEFT, y: HEIGHT - 8 }, label(start, withDay)));
  svg.appendChild(el("text", { class: "tick", x: WIDTH - RIGHT, y: HEIGHT - 8, "text-anchor": "end" }, label(end, withDay)));
  const points = rows.map((r) => ({ t: r[0], ms: Date.parse(r[0]), cpu: r[1], ram: r[2] }));
  for (const series of ["ram", "cpu"]) {
    const line = points.map((p) => x(p.ms).toFixed(1) + "," + y(p[series]).toFixed(1)).join(" ");
    svg.appendChild(el("polyline", { class: "line " + series, points: line }));
  }
  for (const p of points) {
    const g = el("g", { class: "point", "data-t": p.t, "data-cpu": p.cpu, "data-ram": p.ram });
    g.appendChild(el("title", {}, p.t + "  cpu " + p.cpu + "  ram " + p.ram));
    g.appendChild(el("circle", { class: "cpu", cx: x(p.ms).toFixed(1), cy: y(p.cpu).toFixed(1), r: 2.5 }));
    g.appendChild(el("circle", { class: "ram", cx: x(p.ms).toFixed(1), cy: y(p.ram).toFixed(1), r: 2.5 }));
    svg.appendChild(g);
  }
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const answer = await fetch(document.body.dataset.report, { cache: "no-store" });
    const body = await answer.json();
    if (!answer.ok) {
      status.textContent = "no report: " + (body.error || answer.status);
      document.body.dataset.state = "error";
      return;
    }
    const stamp = answer.headers.get("x-report-time");
    const now = stamp ? Date.parse(stamp) : Date.now();
    draw(document.getElementById("hour"), body["1hourdata"], now, MINUTE, 60);
    draw(document.getElementById("day"), body["24hourdata"], now, HOUR, 24);
    const last = body["1hourdata"][body["1hourdata"].length - 1];
    status.textContent = (last ? "now: cpu " + last[1] + ", ram " + last[2] + " — " : "") +
      "report at " + (stamp || "?") + ", refreshed every " + EVERY / 1000 + " s";
    document.body.dataset.state = "drawn";
    document.body.dataset.reportTime = stamp || "";
  } catch (e) {
    status.textContent = "cannot reach load-monitor: " + e;
    document.body.dataset.state = "error";
  }
}

refresh();
setInterval(refresh, EVERY);
