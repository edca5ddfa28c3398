"""The challenge's chat server, made multi-process the way the challenge suggests.

gevent-websocket under gunicorn, one room across all workers through Redis pub/sub:

    REDIS_URL=redis://127.0.0.1:6379 gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker \
        -w 2 --bind 127.0.0.1:8000 chatserver:app

Protocol (the same as chat-relay's): a client sends a text frame {"message": ...} to /chat; the
server sets "user" to a 32-hex id fixed for the connection and publishes the object on the Redis
channel; every worker relays what the channel carries to each of its own clients, so every client,
the sender included, gets every message.

Written for pipeworks' chat-bench comparison (benches/chat-bench.sh). Each worker has one greenlet
reading the subscription and writing the message to its clients in turn; a client whose socket
fails is dropped from the room.
"""

import json
import os
import uuid

import gevent
import redis

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
CHANNEL = os.environ.get("CHAT_CHANNEL", "chat")


class ChatBackend:
    """This worker's clients, and the relay from the Redis channel to them."""

    def __init__(self, url, channel):
        self.clients = set()
        self.channel = channel
        # Many greenlets publish at once: they share a bounded pool and wait for a free connection
        # (redis-py's plain pool raises "Too many connections" instead).
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=None)
        self.redis = redis.Redis(connection_pool=pool)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        gevent.spawn(self.relay)

    def publish(self, text):
        self.redis.publish(self.channel, text)

    def relay(self):
        for item in self.pubsub.listen():
            data = item["data"].decode("utf-8")
            for ws in list(self.clients):
                try:
                    ws.send(data)
                except Exception:
                    self.clients.discard(ws)


_backend = None


def backend():
    # Created in the worker after gunicorn forks it (and after gevent patched the sockets).
    global _backend
    if _backend is None:
        _backend = ChatBackend(REDIS_URL, CHANNEL)
    return _backend


def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error":"connect with a WebSocket to /chat"}']
    room = backend()
    user = uuid.uuid4().hex
    room.clients.add(ws)
    try:
        while True:
            text = ws.receive()
            if text is None:
                break
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if not isinstance(message, dict) or "message" not in message:
                continue
            message["user"] = user
            room.publish(json.dumps(message))
    finally:
        room.clients.discard(ws)
    return []
