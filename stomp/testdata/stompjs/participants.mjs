// Two barrier participants written against @stomp/stompjs, driven by the
// Go test TestStompJSParticipants (cmd/tccd/stompjs_process_test.go),
// which runs a real tccd and creates transactions through forsrc's API.
//
//   node participants.mjs ws://127.0.0.1:PORT/ws/tcc
//
// Each participant is an HTTP server of its own with a STOMP connection of
// its own to the coordinator. On PUT /r/<mode>-<n>/confirm with the header
// Tcc-Barrier: <key> it "applies" the confirm in a local transaction it
// keeps open, SUBSCRIBEs to /topic/tccLink/<key>, SENDs its report to
// /app/tccLink/<key>, and waits for the MESSAGE {"outcome":…}: on commit
// it commits and answers 204; on abort it rolls back and answers 503 — or
// 409 when it reported failed itself. <mode> says how it behaves:
//
//   confirm  reports {"status":"confirmed"}
//   fail     reports {"status":"failed","detail":"no seats left"}
//   silent   subscribes but never reports
//
// A participant that hears nothing within 15 s rolls back (forsrc's own
// participant waits 10 s). DELETE /r/<id>/cancel answers 204. GET /state
// answers what happened to each reservation: {"<id>":{"commits":n,
// "rollbacks":n,"timeouts":n,"cancels":n}}, timeouts counting the rollbacks
// for want of a MESSAGE. GET /inflight answers how many confirms are
// waiting for their outcome.
//
// Once both servers listen and both STOMP connections are up it prints
// "listening <host:port of a>" and then {"event":"participants","a":URL,
// "b":URL}; every confirm's end is printed as a JSON line too. Any setup
// failure exits 1. Set STOMP_DEBUG=1 to see stompjs' log.

import http from 'node:http';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const [url] = process.argv.slice(2);
if (!url) {
  console.error('usage: node participants.mjs WS_URL');
  process.exit(2);
}

const report = (event, fields = {}) => console.log(JSON.stringify({ event, ...fields }));
const fail = (why) => {
  console.error(`stompjs participants: ${why}`);
  process.exit(1);
};

// connect opens a participant's STOMP connection, resolved once CONNECTED.
function connect(name) {
  return new Promise((resolve) => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp']),
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      debug: (msg) => {
        if (process.env.STOMP_DEBUG) console.error(`${name}: ${msg}`);
      },
    });
    client.onConnect = () => resolve(client);
    client.onStompError = (frame) => fail(`${name}: ERROR frame: ${frame.headers.message}`);
    client.onWebSocketError = (event) => fail(`${name}: WebSocket error: ${event.message ?? event}`);
    client.onWebSocketClose = () => fail(`${name}: the connection closed`);
    client.activate();
  });
}

// outcome subscribes to key's topic, then runs send (the report, if any),
// and resolves with the outcome, or "none" when nothing came in time.
function outcome(client, key, send) {
  return new Promise((resolve) => {
    let sub;
    const timer = setTimeout(() => {
      sub.unsubscribe();
      resolve('none');
    }, 15000);
    sub = client.subscribe(`/topic/tccLink/${key}`, (m) => {
      clearTimeout(timer);
      sub.unsubscribe();
      resolve(JSON.parse(m.body).outcome);
    });
    send();
  });
}

function participant(name, client) {
  const state = {};
  let inflight = 0;
  const count = (id, what) => {
    state[id] ??= { commits: 0, rollbacks: 0, timeouts: 0, cancels: 0 };
    state[id][what]++;
  };
  return http.createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    let m;
    if (req.method === 'GET' && path === '/inflight') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(inflight));
    } else if (req.method === 'GET' && path === '/state') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(state));
    } else if (req.method === 'DELETE' && (m = path.match(/^\/r\/([^/]+)\/cancel$/))) {
      count(m[1], 'cancels');
      report('cancel', { p: name, id: m[1] });
      res.writeHead(204).end();
    } else if (req.method === 'PUT' && (m = path.match(/^\/r\/((confirm|fail|silent)-[^/]+)\/confirm$/))) {
      const [, id, mode] = m;
      const key = req.headers['tcc-barrier'];
      if (!key) {
        res.writeHead(400).end('no Tcc-Barrier key');
        return;
      }
      // The local transaction is open from here until the outcome.
      inflight++;
      const got = await outcome(client, key, () => {
        if (mode === 'silent') return;
        const body = mode === 'fail' ? { status: 'failed', detail: 'no seats left' } : { status: 'confirmed' };
        client.publish({ destination: `/app/tccLink/${key}`, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      });
      inflight--;
      if (got === 'commit') {
        count(id, 'commits');
        report('commit', { p: name, id });
        res.writeHead(204).end();
        return;
      }
      count(id, 'rollbacks');
      if (got === 'none') count(id, 'timeouts');
      report('rollback', { p: name, id, outcome: got });
      res.writeHead(mode === 'fail' ? 409 : 503).end();
    } else {
      res.writeHead(404).end();
    }
  });
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address())));
}

const [ca, cb] = await Promise.all([connect('a'), connect('b')]);
const [aa, ab] = await Promise.all([listen(participant('a', ca)), listen(participant('b', cb))]);
console.log(`listening ${aa.address}:${aa.port}`);
report('participants', { a: `http://${aa.address}:${aa.port}`, b: `http://${ab.address}:${ab.port}` });
