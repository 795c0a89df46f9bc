'use strict';
// Awesome API: the app the "scale out one t2.micro" tutorial runs on each instance behind the ALB.
// Dependency-free (built-in modules only) so user data can install it without npm or internet beyond dnf.
const http = require('http');
const os = require('os');

const port = Number.parseInt(process.env.PORT || '3000', 10);
const host = process.env.HOST || '0.0.0.0';
const MAX_SLOW_MS = 30000;
// Whoever starts the app may name the instance (the local data plane does): the answer then shows
// which instance served it, so the load balancing can be seen. Unset, the answer is as before.
const instance = {};
if (process.env.INSTANCE_ID) instance.instance_id = process.env.INSTANCE_ID;
if (process.env.AVAILABILITY_ZONE) instance.availability_zone = process.env.AVAILABILITY_ZONE;
const startedAt = Date.now();

function send(req, res, status, body, extraHeaders) {
  const payload = JSON.stringify(body);
  res.writeHead(status, Object.assign({
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(payload),
    'Cache-Control': 'no-store',
  }, extraHeaders || {}));
  res.end(req.method === 'HEAD' ? undefined : payload);
}

const server = http.createServer((req, res) => {
  res.on('finish', () => {
    console.log(`${new Date().toISOString()} ${req.method} ${req.url} ${res.statusCode}`);
  });
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(req, res, 405, { error: 'method not allowed' }, { Allow: 'GET, HEAD' });
    return;
  }
  let url;
  try {
    url = new URL(req.url, 'http://localhost');
  } catch (err) {
    send(req, res, 400, { error: 'bad request' });
    return;
  }
  const path = url.pathname;
  const hello = () => Object.assign({
    message: 'Awesome API',
    hostname: os.hostname(),
    uptime_seconds: Math.floor((Date.now() - startedAt) / 1000),
  }, instance);
  if (path === '/') {
    send(req, res, 200, hello());
  } else if (path === '/slow') {
    // A request that stays in flight (?ms=, at most MAX_SLOW_MS): shows connection draining.
    const ms = Math.min(Math.max(Number.parseInt(url.searchParams.get('ms') || '1000', 10) || 0, 0), MAX_SLOW_MS);
    setTimeout(() => send(req, res, 200, Object.assign(hello(), { slept_ms: ms })), ms);
  } else if (path === '/health') {
    send(req, res, 200, { status: 'ok' });
  } else {
    send(req, res, 404, { error: 'not found', path });
  }
});

server.listen(port, host, () => {
  console.log(`Awesome API listening on ${host}:${port} (hostname ${os.hostname()})`);
});

process.on('SIGTERM', () => {
  console.log('SIGTERM received, closing server');
  server.close(() => process.exit(0));
  if (typeof server.closeIdleConnections === 'function') {
    server.closeIdleConnections();
  }
  // Keep-alive connections could hold close() open; do not outlive systemd's stop timeout.
  setTimeout(() => process.exit(0), 5000).unref();
});
