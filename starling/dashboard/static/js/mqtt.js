// A small MQTT 3.1.1 / 5.0 client over WebSocket (binary frames, sub-protocol
// "mqtt"): CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH at QoS 0 and 1, receiving at
// QoS 0, 1 and 2, keepalive pings.  Enough for the dashboard's MQTT tool.

const CONNECT = 1;
const CONNACK = 2;
const PUBLISH = 3;
const PUBACK = 4;
const PUBREC = 5;
const PUBREL = 6;
const PUBCOMP = 7;
const SUBSCRIBE = 8;
const SUBACK = 9;
const UNSUBSCRIBE = 10;
const UNSUBACK = 11;
const PINGREQ = 12;
const PINGRESP = 13;
const DISCONNECT = 14;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class Writer {
  constructor() { this.parts = []; this.length = 0; }
  bytes(value) { this.parts.push(value); this.length += value.length; return this; }
  byte(value) { return this.bytes(Uint8Array.of(value)); }
  u16(value) { return this.bytes(Uint8Array.of(value >> 8, value & 0xff)); }
  varint(value) {
    const out = [];
    do {
      let digit = value % 128;
      value = Math.floor(value / 128);
      if (value > 0) digit |= 0x80;
      out.push(digit);
    } while (value > 0);
    return this.bytes(Uint8Array.from(out));
  }
  string(value) { const b = encoder.encode(value); return this.u16(b.length).bytes(b); }
  binary(value) { return this.u16(value.length).bytes(value); }
  toBytes() {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const part of this.parts) { out.set(part, at); at += part.length; }
    return out;
  }
}

class Reader {
  constructor(bytes) { this.b = bytes; this.i = 0; }
  byte() { if (this.i >= this.b.length) throw new Error('packet too short'); return this.b[this.i++]; }
  u16() { return (this.byte() << 8) | this.byte(); }
  varint() {
    let value = 0;
    let mult = 1;
    for (let n = 0; n < 4; n += 1) {
      const digit = this.byte();
      value += (digit & 0x7f) * mult;
      if (!(digit & 0x80)) return value;
      mult *= 128;
    }
    throw new Error('malformed variable byte integer');
  }
  string() {
    const n = this.u16();
    const s = decoder.decode(this.b.subarray(this.i, this.i + n));
    this.i += n;
    return s;
  }
  skip(n) { this.i += n; }
  rest() { return this.b.subarray(this.i); }
  more() { return this.i < this.b.length; }
}

function packet(type, flags, body) {
  return new Writer().byte((type << 4) | flags).varint(body.length).bytes(body).toBytes();
}

/** Split a byte stream into whole packets: [{type, flags, body}], and the rest. */
export function splitPackets(buffer) {
  const packets = [];
  let at = 0;
  for (;;) {
    if (buffer.length - at < 2) break;
    let length = 0;
    let mult = 1;
    let i = at + 1;
    let complete = false;
    for (let n = 0; n < 4 && i < buffer.length; n += 1) {
      const digit = buffer[i++];
      length += (digit & 0x7f) * mult;
      mult *= 128;
      if (!(digit & 0x80)) { complete = true; break; }
    }
    if (!complete || buffer.length - i < length) break;
    packets.push({type: buffer[at] >> 4, flags: buffer[at] & 0x0f, body: buffer.subarray(i, i + length)});
    at = i + length;
  }
  return {packets, rest: buffer.subarray(at)};
}

export class MqttClient extends EventTarget {
  /** options: {url, clientId, username, password, keepalive, clean, version: 4 | 5} */
  constructor(options) {
    super();
    this.options = {keepalive: 60, clean: true, version: 4, ...options};
    this.ws = null;
    this.buffer = new Uint8Array(0);
    this.nextId = 1;
    this.pending = new Map(); // packet id -> {resolve, reject}
    this.awaitingRel = new Set(); // QoS 2 ids received, PUBREL not yet
    this.ping = null;
    this.connected = false;
  }

  get v5() { return this.options.version === 5; }

  connect() {
    return new Promise((resolve, reject) => {
      this.connack = {resolve, reject};
      let ws;
      try {
        ws = new WebSocket(this.options.url, ['mqtt']);
      } catch (err) {
        reject(err);
        return;
      }
      this.ws = ws;
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => this.send(this.connectPacket());
      ws.onmessage = (event) => this.receive(new Uint8Array(event.data));
      ws.onerror = () => this.fail(new Error(`WebSocket error on ${this.options.url}`));
      ws.onclose = (event) => this.closed(event);
    });
  }

  connectPacket() {
    const o = this.options;
    let flags = o.clean ? 0x02 : 0;
    if (o.username) flags |= 0x80;
    if (o.password) flags |= 0x40;
    const w = new Writer().string('MQTT').byte(o.version).byte(flags).u16(o.keepalive);
    if (this.v5) w.varint(0);
    w.string(o.clientId);
    if (o.username) w.string(o.username);
    if (o.password) w.binary(encoder.encode(o.password));
    return packet(CONNECT, 0, w.toBytes());
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  id() {
    const id = this.nextId;
    this.nextId = id >= 65535 ? 1 : id + 1;
    return id;
  }

  expect(id) {
    return new Promise((resolve, reject) => this.pending.set(id, {resolve, reject}));
  }

  subscribe(topic, qos = 0) {
    const id = this.id();
    const w = new Writer().u16(id);
    if (this.v5) w.varint(0);
    w.string(topic).byte(qos);
    this.send(packet(SUBSCRIBE, 2, w.toBytes()));
    return this.expect(id);
  }

  unsubscribe(topic) {
    const id = this.id();
    const w = new Writer().u16(id);
    if (this.v5) w.varint(0);
    w.string(topic);
    this.send(packet(UNSUBSCRIBE, 2, w.toBytes()));
    return this.expect(id);
  }

  /** QoS 0 resolves once sent, QoS 1 on PUBACK. */
  publish(topic, payload, qos = 0, retain = false) {
    const w = new Writer().string(topic);
    const id = qos > 0 ? this.id() : 0;
    if (qos > 0) w.u16(id);
    if (this.v5) w.varint(0);
    w.bytes(typeof payload === 'string' ? encoder.encode(payload) : payload);
    this.send(packet(PUBLISH, (qos << 1) | (retain ? 1 : 0), w.toBytes()));
    return qos > 0 ? this.expect(id) : Promise.resolve(null);
  }

  end() {
    clearInterval(this.ping);
    if (this.connected) this.send(packet(DISCONNECT, 0, new Uint8Array(0)));
    this.connected = false;
    if (this.ws) this.ws.close(1000);
  }

  // -- receiving ------------------------------------------------------------------------

  receive(chunk) {
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer);
    joined.set(chunk, this.buffer.length);
    const {packets, rest} = splitPackets(joined);
    this.buffer = rest.slice();
    for (const p of packets) {
      try {
        this.handle(p);
      } catch (err) {
        this.fail(new Error(`bad packet from the server: ${err.message}`));
        return;
      }
    }
  }

  handle({type, flags, body}) {
    const r = new Reader(body);
    switch (type) {
      case CONNACK: {
        r.byte();
        const code = r.byte();
        if (code !== 0) {
          this.fail(new Error(`connection refused: reason code ${code} (0x${code.toString(16)})`));
          return;
        }
        this.connected = true;
        if (this.options.keepalive > 0) {
          this.ping = setInterval(() => this.send(packet(PINGREQ, 0, new Uint8Array(0))),
            this.options.keepalive * 1000);
        }
        if (this.connack) { this.connack.resolve(); this.connack = null; }
        break;
      }
      case PUBLISH: {
        const qos = (flags >> 1) & 3;
        const topic = r.string();
        const id = qos > 0 ? r.u16() : 0;
        if (this.v5) r.skip(r.varint());
        const message = {topic, payload: r.rest().slice(), qos, retain: Boolean(flags & 1),
          dup: Boolean(flags & 8)};
        if (qos === 1) this.send(packet(PUBACK, 0, new Writer().u16(id).toBytes()));
        if (qos === 2) {
          this.send(packet(PUBREC, 0, new Writer().u16(id).toBytes()));
          if (this.awaitingRel.has(id)) break; // a resend: delivered already
          this.awaitingRel.add(id);
        }
        this.dispatchEvent(Object.assign(new Event('message'), {message}));
        break;
      }
      case PUBREL: {
        const id = r.u16();
        this.awaitingRel.delete(id);
        this.send(packet(PUBCOMP, 0, new Writer().u16(id).toBytes()));
        break;
      }
      case PUBACK:
      case SUBACK:
      case UNSUBACK: {
        const id = r.u16();
        if (this.v5 && type !== PUBACK && r.more()) r.skip(r.varint());
        const codes = Array.from(r.rest());
        const waiter = this.pending.get(id);
        this.pending.delete(id);
        if (!waiter) break;
        const failed = type === SUBACK ? codes.find((c) => c >= 0x80)
          : (codes[0] >= 0x80 ? codes[0] : undefined);
        if (failed !== undefined) waiter.reject(new Error(`refused: reason code 0x${failed.toString(16)}`));
        else waiter.resolve(codes);
        break;
      }
      case PINGRESP:
        break;
      case DISCONNECT: {
        const code = r.more() ? r.byte() : 0;
        this.closeReason = `the server disconnected: reason code 0x${code.toString(16)}`;
        break;
      }
      default:
        throw new Error(`unexpected packet type ${type}`);
    }
  }

  fail(err) {
    if (this.connack) { this.connack.reject(err); this.connack = null; }
    this.closeReason = this.closeReason || err.message;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close();
  }

  closed(event) {
    clearInterval(this.ping);
    const wasConnected = this.connected;
    this.connected = false;
    const reason = this.closeReason || `WebSocket closed (code ${event.code})`;
    if (this.connack) { this.connack.reject(new Error(reason)); this.connack = null; }
    for (const waiter of this.pending.values()) waiter.reject(new Error(reason));
    this.pending.clear();
    this.dispatchEvent(Object.assign(new Event('close'), {reason, wasConnected}));
  }
}
