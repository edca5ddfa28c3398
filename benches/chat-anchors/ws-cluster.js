// The challenge's chat server the Node way: `ws` under node:cluster, one room across all workers
// through Redis pub/sub. Written for pipeworks' chat-bench comparison (benches/chat-bench.sh).
//
//     REDIS_URL=redis://127.0.0.1:6379 WORKERS=2 PORT=8000 node ws-cluster.js
//
// Protocol (the same as chat-relay's): a client sends a text frame {"message": ...} to /chat; the
// worker sets "user" to a 32-hex id fixed for the connection and publishes the object on the Redis
// channel; every worker writes what the channel carries to each of its own clients, so every
// client, the sender included, gets every message. The primary only forks (and re-forks) workers;
// node:cluster hands it the accepted connections round-robin.
//
// Tuned as its docs suggest for a broadcast: no per-message deflate, bufferutil installed, the
// subscription read as Buffers (redis' buffer mode) so that each send writes the same bytes
// without converting a string per client.
'use strict';

const cluster = require('node:cluster');
const crypto = require('node:crypto');
const http = require('node:http');
const { WebSocketServer, WebSocket } = require('ws');
const { createClient } = require('redis');

const PORT = Number(process.env.PORT || 8000);
const HOST = process.env.HOST || '127.0.0.1';
const WORKERS = Number(process.env.WORKERS || 2);
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const CHANNEL = process.env.CHAT_CHANNEL || 'chat';

if (cluster.isPrimary) {
  let stopping = false;
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  cluster.on('exit', () => {
    if (!stopping) cluster.fork();
  });
  const stop = () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers)) worker.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  worker().catch((err) => {
    console.error('ws-cluster worker:', err);
    process.exit(1);
  });
}

async function worker() {
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  pub.on('error', (err) => console.error('redis:', err.message));
  sub.on('error', (err) => console.error('redis:', err.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const server = http.createServer((req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"connect with a WebSocket to /chat"}');
  });
  const wss = new WebSocketServer({ server, path: '/chat', perMessageDeflate: false });

  await sub.subscribe(
    CHANNEL,
    (data) => {
      for (const ws of wss.clients) {
        if (ws.readyState === WebSocket.OPEN) ws.send(data, { binary: false });
      }
    },
    true, // buffer mode: data is a Buffer
  );

  wss.on('connection', (ws) => {
    const user = crypto.randomBytes(16).toString('hex');
    ws.on('error', () => ws.terminate());
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let message;
      try {
        message = JSON.parse(data);
      } catch {
        return;
      }
      if (message === null || typeof message !== 'object' || Array.isArray(message) || !('message' in message)) return;
      message.user = user;
      pub.publish(CHANNEL, JSON.stringify(message)).catch(() => {});
    });
  });

  // benches/chat-bench.sh waits for this line from every worker before it measures.
  server.listen(PORT, HOST, () => console.error(`worker ${process.pid} listening on ${HOST}:${PORT}`));
}
