// webreducer-client.js: the browser client of WebReducer's two-way socket
// (WS /write/<write_key>/live, docs/realtime.md "The JavaScript client"). No dependencies; an
// ES module that also sets globalThis.WebReducer = { connect } for pages without modules.
//
//   import { connect } from "https://APP/static/js/webreducer-client.js";
//   const game = connect("https://HOST/write/WRITE_KEY", {
//     read: "READ_KEY",        // optional: also receive the room's state frames
//     room: "match-42",        // optional: the main room when absent
//     name: "alice",           // optional: shown in presence, ≤ 64 characters
//     params: { view: "x" },   // optional: more query parameters (they reach `query`)
//   });
//   game.on("state", (state, frame) => draw(state));     // frame: {type, seq, body[, status]}
//   game.on("presence", (connections) => …);             // [{id, name}, …]
//   game.on("broadcast", (body, frame) => …);            // frame.from: the sender's id
//   game.on("status", (status, detail) => …);            // "connecting" | "open" | "closed"
//   const ack = await game.send({ row: 1, col: 2 });     // {type:"ack", ref, id, status, body}
//   game.broadcast({ x: 10, y: 20 });                    // to the room's other sockets
//   game.close();
//
// What it guarantees:
// - Every send() is a write with an idempotency key of its own (random, or `idempotencyKey`).
//   Writes not acknowledged yet are kept and resent, in order and with the same key, when the
//   socket reconnects, so a write whose ack was lost is folded once (the server folds a resent
//   key as a duplicate and acknowledges it again). The promise resolves with the ack, whatever
//   its status (a refusal is an ack with status ≥ 400 and body {error: {code, message}});
//   it rejects only when the connection is closed for good with the write unacknowledged, or
//   when the write is larger than the server takes (it closes the socket with 1009).
//   A refusal where nothing was stored and the server says to send again (503 unavailable,
//   429 rate_limited, hook_busy, too_many_in_flight) is resent by itself after `retry_after`,
//   up to `retries` (5) times, behind the writes sent meanwhile; then its ack is the answer.
// - It reconnects after any drop (exponential backoff with jitter, `minDelay` to `maxDelay`
//   ms), with since=<seq of the last state frame> so an unchanged state is not sent again;
//   after a history reset (close 4409) without since. Closes 4404 (unknown, paused or revoked
//   key) and 4400 (invalid room or name) are final: status "closed", nothing resent.
// - At most `maxInFlight` (128) writes are on the wire unacknowledged; later ones wait here.
// - A ping every `pingInterval` ms; a socket silent for two intervals is dropped and reopened
//   (a server that vanished without closing the TCP connection).
//
// Read-only properties: state, seq (null before the first state frame), stateStatus (the
// frame's status when `query` answered another status than 200, else 200), presence, id (this
// socket's connection id, new at each reconnect), status, pending (writes not acknowledged).
// Callbacks may also be given as options: onstate, onpresence, onbroadcast, onack, onstatus.

const FINAL_CLOSES = new Set([4400, 4404]);
const HISTORY_RESET = 4409;
const NORMAL = 1000;
const TOO_BIG = 1009; // a frame over the server's message limit
// Refusals where nothing was stored and the server says to send again after `retry_after`.
const RESEND = new Set(["unavailable", "hook_busy", "too_many_in_flight", "rate_limited"]);

function randomKey() {
  // crypto.randomUUID exists only on secure origins; getRandomValues everywhere.
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The ws(s):// URL of the socket from a write URL (http(s)://…/write/KEY, or already
// ws(s)://…/write/KEY/live), and its query parameters (the URL's own ones kept).
function socketUrl(writeUrl, options, since) {
  const base = typeof location === "undefined" ? undefined : location.href;
  const url = new URL(writeUrl, base);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  url.hash = "";
  if (!/\/live\/?$/.test(url.pathname)) url.pathname = url.pathname.replace(/\/?$/, "/live");
  const query = url.searchParams;
  const params = options.params || {};
  const entries = params instanceof URLSearchParams ? params.entries() : Object.entries(params);
  for (const [name, value] of entries) {
    for (const one of Array.isArray(value) ? value : [value]) query.append(name, String(one));
  }
  if (options.room != null) query.set("room", options.room);
  if (options.read != null) query.set("read", readKey(options.read));
  if (options.name != null) query.set("name", options.name);
  query.delete("since");
  if (since != null) query.set("since", String(since));
  return url.toString();
}

// A read key, or the key in a read URL (https://HOST/read/KEY[/live]).
function readKey(read) {
  const match = /\/read\/([^/?#]+)/.exec(String(read));
  return match ? match[1] : String(read);
}

class Connection {
  constructor(writeUrl, options = {}) {
    this.writeUrl = writeUrl;
    this.options = options;
    this.state = undefined;
    this.seq = options.since ?? null;
    this.stateStatus = 200;
    this.presence = [];
    this.id = null;
    this.status = "connecting";
    this._listeners = {};
    this._writes = []; // {frame, resolve, reject} not acknowledged yet, in sending order
    this._onWire = 0; // how many of them (the first ones) this socket has sent
    this._later = new Set(); // writes refused with "send again", waiting for their retry_after
    this._next = 1;
    this._socket = null;
    this._ready = false;
    this._attempt = 0;
    this._timer = null;
    this._pinger = null;
    this._heard = 0;
    this._closed = false;
    this._open();
  }

  get pending() {
    return this._writes.length + this._later.size;
  }

  // on("state" | "presence" | "broadcast" | "ack" | "status" | "hello", fn) → a function
  // that removes the listener.
  on(type, fn) {
    (this._listeners[type] ||= new Set()).add(fn);
    return () => this._listeners[type].delete(fn);
  }

  // A write of this socket's room; resolves with its ack.
  send(body, { idempotencyKey } = {}) {
    if (this._closed) return Promise.reject(new Error("WebReducer: the connection is closed"));
    const frame = {
      type: "write",
      ref: this._next++,
      idempotency_key: idempotencyKey ?? randomKey(),
      body,
    };
    return new Promise((resolve, reject) => {
      this._writes.push({ frame, resolve, reject });
      this._pump();
    });
  }

  // To the room's other sockets, now or never: not stored, not resent, not sent while the
  // socket is down (returns false then). A refusal (size, rate) comes back as an "ack" event.
  broadcast(body) {
    return this._transmit({ type: "broadcast", ref: `b${this._next++}`, body });
  }

  close() {
    this._finish(NORMAL, "closed by the client");
  }

  // --- internals ------------------------------------------------------------------------------

  _emit(type, ...args) {
    const callback = this.options["on" + type];
    if (typeof callback === "function") callback(...args);
    for (const fn of this._listeners[type] || []) fn(...args);
  }

  _setStatus(status, detail = {}) {
    this.status = status;
    this._emit("status", status, detail);
  }

  // Sends the writes not sent on this socket yet, in order, keeping at most `maxInFlight`
  // unacknowledged (the server answers more than its WR_LIVE_WRITES_IN_FLIGHT with 429s).
  _pump() {
    const socket = this._socket;
    if (!this._ready || socket.readyState !== 1) return;
    const most = this.options.maxInFlight ?? 128;
    while (this._onWire < this._writes.length && this._onWire < most) {
      socket.send(JSON.stringify(this._writes[this._onWire].frame));
      this._onWire += 1;
    }
  }

  _transmit(frame) {
    const socket = this._socket;
    if (!this._ready || socket.readyState !== 1) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  _open() {
    clearTimeout(this._timer);
    this._setStatus("connecting", { attempt: this._attempt });
    const Socket = this.options.WebSocket || globalThis.WebSocket;
    let socket;
    try {
      socket = new Socket(socketUrl(this.writeUrl, this.options, this.seq));
    } catch (error) {
      // A malformed URL or option: retrying would not mend it.
      this._finish(4400, String(error));
      return;
    }
    this._socket = socket;
    this._ready = false; // until its hello: the server has joined the socket to its room
    socket.onopen = () => {
      this._heard = Date.now();
      this._startPinging(socket);
    };
    socket.onmessage = (event) => {
      this._heard = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // every frame of the protocol is JSON; anything else is not ours to guess
      }
      this._receive(frame);
    };
    socket.onclose = (event) => this._dropped(socket, event.code, event.reason);
    socket.onerror = () => {}; // a close event follows; it decides
  }

  _receive(frame) {
    switch (frame.type) {
      case "hello":
        this.id = frame.id;
        this._attempt = 0;
        this._ready = true;
        // Everything not acknowledged, in order, with its key: the server folds a key once.
        this._onWire = 0;
        this._pump();
        this._setStatus("open", { id: frame.id });
        this._emit("hello", frame);
        break;
      case "state":
        this.state = frame.body;
        this.seq = frame.seq;
        this.stateStatus = frame.status ?? 200;
        this._emit("state", frame.body, frame);
        break;
      case "presence":
        this.presence = frame.connections;
        this._emit("presence", frame.connections, frame);
        break;
      case "broadcast":
        this._emit("broadcast", frame.body, frame);
        break;
      case "ack":
        this._acknowledged(frame);
        break;
      default:
        break; // "pong", and types of later versions
    }
  }

  _acknowledged(ack) {
    const index = this._writes.findIndex((write) => write.frame.ref === ack.ref);
    if (index >= 0) {
      const [write] = this._writes.splice(index, 1);
      if (index < this._onWire) this._onWire -= 1;
      const code = ack.body?.error?.code;
      write.tries = (write.tries || 0) + 1;
      if (RESEND.has(code) && write.tries <= (this.options.retries ?? 5)) {
        // Nothing was stored: the same frame (same key) again after retry_after, behind the
        // writes sent meanwhile.
        this._later.add(write);
        write.timer = setTimeout(() => {
          this._later.delete(write);
          this._writes.push(write);
          this._pump();
        }, 1000 * (ack.retry_after ?? 1) * (1 + Math.random() / 2)); // jitter: not all at once
      } else {
        write.resolve(ack);
      }
      this._pump();
    }
    this._emit("ack", ack);
  }

  _startPinging(socket) {
    clearInterval(this._pinger);
    const every = this.options.pingInterval ?? 20000;
    this._pinger = setInterval(() => {
      if (Date.now() - this._heard > 2 * every) {
        socket.close(); // onclose reconnects (the close code is then 1005/1006)
        return;
      }
      if (socket.readyState === 1) socket.send(JSON.stringify({ type: "ping" }));
    }, every);
  }

  _dropped(socket, code, reason) {
    if (socket !== this._socket) return;
    clearInterval(this._pinger);
    this._socket = null;
    this._ready = false;
    this._onWire = 0;
    if (this._closed) return;
    if (FINAL_CLOSES.has(code)) {
      this._finish(code, reason);
      return;
    }
    if (code === HISTORY_RESET) this.seq = null; // reconnect without since
    if (code === TOO_BIG) this._dropLargest(reason);
    const min = this.options.minDelay ?? 250;
    const max = this.options.maxDelay ?? 15000;
    const ceiling = Math.min(max, min * 2 ** this._attempt);
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    this._attempt += 1;
    this._setStatus("connecting", { code, reason, retryIn: Math.round(delay) });
    this._timer = setTimeout(() => this._open(), delay);
  }

  // The server closed on a frame over its message limit: the largest pending write (resending
  // it would only close the socket again) is rejected, the others are resent.
  _dropLargest(reason) {
    let largest = -1;
    let size = -1;
    this._writes.forEach((write, i) => {
      const length = JSON.stringify(write.frame).length;
      if (length > size) [largest, size] = [i, length];
    });
    if (largest < 0) return;
    const [write] = this._writes.splice(largest, 1);
    write.reject(new Error(`WebReducer: the write is over the server's limit (1009 ${reason})`));
  }

  _finish(code, reason) {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    clearInterval(this._pinger);
    const socket = this._socket;
    this._socket = null;
    this._ready = false;
    if (socket && socket.readyState <= 1) socket.close(NORMAL);
    for (const write of this._later) clearTimeout(write.timer);
    const writes = [...this._writes.splice(0), ...this._later];
    this._later.clear();
    for (const write of writes) {
      write.reject(new Error(`WebReducer: closed (${code} ${reason}) before the ack`));
    }
    this._setStatus("closed", { code, reason });
  }
}

// Opens the socket of a write URL; see the top of this file.
export function connect(writeUrl, options = {}) {
  return new Connection(writeUrl, options);
}

globalThis.WebReducer = { connect };
