// A run of @stomp/stompjs against tccd's STOMP server, driven by the Go
// test TestStompJS (stomp/stompjs_test.go), which starts the server and
// checks what this script reports.
//
//   node client.mjs ws://127.0.0.1:PORT/ws/tcc PASSCODE
//
// It connects with a login and passcode, subscribes to
// /topic/tccLink/k1, SENDs {"status":"confirmed"} to /app/tccLink/k1 with
// a receipt (the test server answers by publishing {"outcome":"commit"}
// on the topic), waits for the published MESSAGE, the receipt, and two
// heart-beats each way, subscribes to /topic/tccLink/retained (whose
// retained message must arrive at once), and disconnects cleanly.
//
// Each step is printed as one JSON line on stdout; any failure exits 1
// with the reason on stderr. Set STOMP_DEBUG=1 to see stompjs' log.

import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const [url, passcode] = process.argv.slice(2);
if (!url || passcode === undefined) {
  console.error('usage: node client.mjs WS_URL PASSCODE');
  process.exit(2);
}

const report = (event, fields = {}) => console.log(JSON.stringify({ event, ...fields }));
const fail = (why) => {
  console.error(`stompjs client: ${why}`);
  process.exit(1);
};
// A fail-safe against a hang; steps wait on events, not on time.
const deadline = setTimeout(() => fail('timed out'), 30000);

let socket;
let pings = 0;
let pongs = 0;
let gotMessage = false;
let gotReceipt = false;
let retainedAsked = false;

const client = new Client({
  webSocketFactory: () => {
    socket = new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
    return socket;
  },
  connectHeaders: { login: 'node', passcode },
  reconnectDelay: 0, // one connection: a second would hide a failure
  heartbeatIncoming: 200,
  heartbeatOutgoing: 200,
  // Tolerate a loaded machine: ten intervals of silence before giving up.
  heartbeatToleranceMultiplier: 10,
  debug: (msg) => {
    if (msg === '>>> PING') {
      pings++;
      maybeRetained();
    }
    if (process.env.STOMP_DEBUG) console.error(msg);
  },
});

client.onHeartbeatReceived = () => {
  pongs++;
  maybeRetained();
};
client.onStompError = (frame) => fail(`ERROR frame: ${frame.headers.message}`);
client.onWebSocketError = (event) => fail(`WebSocket error: ${event.message ?? event}`);
client.onHeartbeatLost = () => fail('heart-beat lost');
client.onUnhandledMessage = (m) => fail(`unexpected MESSAGE on ${m.headers.destination}`);
client.onUnhandledReceipt = (f) => fail(`unexpected RECEIPT ${f.headers['receipt-id']}`);

client.onConnect = (frame) => {
  report('connected', {
    version: frame.headers.version,
    heartBeat: frame.headers['heart-beat'],
    server: frame.headers.server,
    subprotocol: socket.protocol,
  });
  client.subscribe('/topic/tccLink/k1', (m) => {
    report('message', {
      destination: m.headers.destination,
      contentType: m.headers['content-type'],
      body: m.body,
    });
    gotMessage = true;
    maybeRetained();
  });
  client.watchForReceipt('r-send', (f) => {
    report('receipt', { receiptId: f.headers['receipt-id'] });
    gotReceipt = true;
    maybeRetained();
  });
  client.publish({
    destination: '/app/tccLink/k1',
    headers: { 'content-type': 'application/json', receipt: 'r-send' },
    body: JSON.stringify({ status: 'confirmed' }),
  });
};

// Once the message, the receipt and two heart-beats each way are in,
// subscribe where a retained message waits, then disconnect.
function maybeRetained() {
  if (retainedAsked || !gotMessage || !gotReceipt || pings < 2 || pongs < 2) return;
  retainedAsked = true;
  report('heartbeats', { sent: pings, received: pongs });
  client.subscribe('/topic/tccLink/retained', async (m) => {
    report('retained', { destination: m.headers.destination, body: m.body });
    await client.deactivate(); // DISCONNECT, its RECEIPT, then the close
    report('disconnected', { readyState: socket.readyState });
    clearTimeout(deadline);
  });
}

client.onDisconnect = (frame) => report('disconnect-receipt', { receiptId: frame.headers['receipt-id'] });

client.activate();
