// The challenge's chat server with Socket.IO: node:cluster workers, one room across them through
// @socket.io/redis-adapter (Redis pub/sub). Written for pipeworks' chat-bench comparison
// (benches/chat-bench.sh).
//
//     REDIS_URL=redis://127.0.0.1:6379 WORKERS=2 PORT=8000 node socketio.js
//
// Protocol: the challenge's messages as Socket.IO events. A client emits `message` with
// {"message": ...}; the server sets "user" to a 32-hex id fixed for the connection and emits the
// object as `message` to every client of every worker (io.emit goes through the adapter), the
// sender included. chat-bench speaks it with `--protocol socket.io` over the WebSocket transport
// (/socket.io/?EIO=4&transport=websocket). WebSocket only, so no sticky sessions are needed
// between the workers; the primary only forks (and re-forks) them.
//
// Socket.IO encodes a broadcast once for all its clients (and, since 4.6, the WebSocket frame
// too); per-message deflate is off, bufferutil is installed for `ws` underneath.
'use strict';

const cluster = require('node:cluster');
const crypto = require('node:crypto');
const http = require('node:http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
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
    console.error('socketio worker:', err);
    process.exit(1);
  });
}

async function worker() {
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  pub.on('error', (err) => console.error('redis:', err.message));
  sub.on('error', (err) => console.error('redis:', err.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const server = http.createServer();
  const io = new Server(server, {
    transports: ['websocket'],
    serveClient: false,
    perMessageDeflate: false,
    adapter: createAdapter(pub, sub, { key: CHANNEL }),
  });

  io.on('connection', (socket) => {
    const user = crypto.randomBytes(16).toString('hex');
    socket.on('message', (message) => {
      if (message === null || typeof message !== 'object' || Array.isArray(message) || !('message' in message)) return;
      io.emit('message', { ...message, user });
    });
  });

  // benches/chat-bench.sh waits for this line from every worker before it measures.
  server.listen(PORT, HOST, () => console.error(`worker ${process.pid} listening on ${HOST}:${PORT}`));
}
