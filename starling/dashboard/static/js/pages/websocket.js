// The MQTT-over-WebSocket tool: connect to the node's WebSocket listener (its port
// and path read from the API), subscribe, publish at QoS 0/1, see the messages.

import {get, path} from '../api.js';
import {
  badge, button, card, checkbox, clear, errorLine, field, h, input, pageHeader, run, select, table,
} from '../dom.js';
import {MqttClient} from '../mqtt.js';

const KEEP = 200;
let client = null; // survives page changes, like a tab of its own

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return `dashboard_${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

async function wsEndpoint(node) {
  const listeners = await get(path`nodes/${node}/listener_details`);
  const wanted = window.location.protocol === 'https:' ? ['mqtt:wss', 'mqtt:ws'] : ['mqtt:ws', 'mqtt:wss'];
  for (const protocol of wanted) {
    const found = listeners.find((l) => l.protocol === protocol && l.running);
    if (found) {
      return {scheme: protocol === 'mqtt:wss' ? 'wss' : 'ws',
        port: found.listen_on.slice(found.listen_on.lastIndexOf(':') + 1), path: found.path || '/mqtt'};
    }
  }
  return null;
}

const received = [];
const published = [];
const subscriptions = [];
// The page shown now redraws through these; the client's handlers outlive it.
let redraw = () => {};
let closedNotice = () => {};

function onMessage(event) {
  const {message} = event;
  received.unshift({time: new Date().toLocaleTimeString(), topic: message.topic, qos: message.qos,
    retain: message.retain, payload: new TextDecoder().decode(message.payload)});
  received.length = Math.min(received.length, KEEP);
  redraw();
}

function onClose(event) {
  if (event.target !== client) return; // an earlier connection, replaced
  subscriptions.length = 0;
  closedNotice(event);
}

/** Disconnect the tool's client (at logout). */
export function endClient() {
  if (client) client.end();
  client = null;
  received.length = 0;
  published.length = 0;
  subscriptions.length = 0;
}

export async function render(ctx) {
  const {node} = ctx;
  const endpoint = await run(() => wsEndpoint(node));
  if (!ctx.alive()) return;

  const scheme = select(['ws', 'wss'], {name: 'scheme', value: endpoint ? endpoint.scheme : 'ws'});
  const host = input({name: 'host', value: window.location.hostname});
  const port = input({name: 'port', value: endpoint ? endpoint.port : ''});
  const wsPath = input({name: 'path', value: endpoint ? endpoint.path : '/mqtt'});
  const clientId = input({name: 'client_id', value: randomId()});
  const username = input({name: 'username', autocomplete: 'off'});
  const password = input({name: 'password', type: 'password', autocomplete: 'off'});
  const keepalive = input({name: 'keepalive', type: 'number', value: '60'});
  const version = select([['4', 'MQTT 3.1.1'], ['5', 'MQTT 5.0']], {name: 'version'});
  const clean = checkbox('Clean session', {name: 'clean', checked: true});
  const state = h('span', {id: 'mqtt-state'});
  const connErrors = errorLine();
  const connectBtn = button('Connect', null, {kind: 'primary'});
  const disconnectBtn = button('Disconnect', null, {kind: 'ghost'});

  const subTopic = input({name: 'sub_topic', value: 'testtopic/#', 'aria-label': 'Subscription topic'});
  const subQos = select(['0', '1', '2'], {name: 'sub_qos', 'aria-label': 'Subscription QoS'});
  const subErrors = errorLine();
  const subsBox = h('div');

  const pubTopic = input({name: 'pub_topic', value: 'testtopic/1', 'aria-label': 'Publish topic'});
  const pubPayload = h('textarea', {name: 'payload', rows: 3, class: 'code', 'aria-label': 'Payload'});
  pubPayload.value = '{ "msg": "Hello, World!" }';
  const pubQos = select(['0', '1'], {name: 'pub_qos', 'aria-label': 'Publish QoS'});
  const pubRetain = checkbox('Retain', {name: 'retain'});
  const pubErrors = errorLine();
  const receivedBox = h('div', {id: 'received-messages'});
  const publishedBox = h('div', {id: 'published-messages'});

  const drawState = () => {
    const up = Boolean(client && client.connected);
    clear(state, up ? badge(`connected as ${client.options.clientId}`, 'ok') : badge('disconnected', 'off'));
    connectBtn.disabled = up;
    disconnectBtn.disabled = !up;
  };
  const drawSubs = () => clear(subsBox, table([
    {title: 'Topic', value: (s) => s.topic},
    {title: 'QoS', value: (s) => s.qos, class: 'num'},
    {title: '', value: (s) => button('Unsubscribe', () => run(async () => {
      await client.unsubscribe(s.topic);
      subscriptions.splice(subscriptions.indexOf(s), 1);
      drawSubs();
    }, {errors: subErrors}), {kind: 'small'})},
  ], subscriptions, {empty: 'No subscription'}));
  const messageColumns = [
    {title: 'Time', value: (m) => m.time},
    {title: 'Topic', value: (m) => m.topic},
    {title: 'QoS', value: (m) => m.qos, class: 'num'},
    {title: 'Retain', value: (m) => (m.retain ? 'yes' : '')},
    {title: 'Payload', value: (m) => h('code', {class: 'payload'}, m.payload)},
  ];
  const drawMessages = () => {
    clear(receivedBox, table(messageColumns, received, {empty: 'No message received yet'}));
    clear(publishedBox, table(messageColumns, published, {empty: 'Nothing published yet'}));
  };

  redraw = () => { if (ctx.alive()) drawMessages(); };
  closedNotice = (event) => {
    if (!ctx.alive()) return;
    drawState();
    drawSubs();
    if (event.wasConnected) connErrors.show(new Error(event.reason));
  };

  connectBtn.addEventListener('click', () => run(async () => {
    if (client) client.end();
    const url = `${scheme.value}://${host.value}:${port.value}${wsPath.value}`;
    client = new MqttClient({url, clientId: clientId.value, username: username.value,
      password: password.value, keepalive: Number(keepalive.value) || 0,
      clean: clean.querySelector('input').checked, version: Number(version.value)});
    client.addEventListener('message', onMessage);
    client.addEventListener('close', onClose);
    state.textContent = 'connecting…';
    try {
      await client.connect();
    } finally {
      drawState();
    }
  }, {errors: connErrors}));
  disconnectBtn.addEventListener('click', () => { if (client) client.end(); });

  const subscribe = () => run(async () => {
    if (!client || !client.connected) throw new Error('not connected');
    const qos = Number(subQos.value);
    const granted = await client.subscribe(subTopic.value, qos);
    subscriptions.push({topic: subTopic.value, qos: granted[0] ?? qos});
    drawSubs();
  }, {errors: subErrors});
  const publish = () => run(async () => {
    if (!client || !client.connected) throw new Error('not connected');
    const qos = Number(pubQos.value);
    const retain = pubRetain.querySelector('input').checked;
    await client.publish(pubTopic.value, pubPayload.value, qos, retain);
    published.unshift({time: new Date().toLocaleTimeString(), topic: pubTopic.value, qos, retain,
      payload: pubPayload.value});
    published.length = Math.min(published.length, KEEP);
    drawMessages();
  }, {errors: pubErrors});

  clear(ctx.main, pageHeader('WebSocket client', state),
    endpoint ? null : h('p', {class: 'notice'},
      `${node} has no running MQTT WebSocket listener (listeners.ws.<name>.bind).`),
    card('Connection',
      h('div', {class: 'grid-form'}, field('Scheme', scheme), field('Host', host), field('Port', port),
        field('Path', wsPath), field('Client ID', clientId), field('Username', username),
        field('Password', password), field('Keepalive (s)', keepalive), field('Protocol', version),
        clean),
      connErrors.el, h('div', {class: 'row-actions'}, connectBtn, disconnectBtn)),
    h('div', {class: 'grid-2'},
      card('Subscribe', h('div', {class: 'inline-form'}, subTopic, subQos,
        button('Subscribe', subscribe, {kind: 'primary'})), subErrors.el, subsBox),
      card('Publish', field('Topic', pubTopic), field('Payload', pubPayload),
        h('div', {class: 'inline-form'}, field('QoS', pubQos), pubRetain,
          button('Publish', publish, {kind: 'primary'})), pubErrors.el)),
    card('Received', receivedBox), card('Published', publishedBox));
  drawState();
  drawSubs();
  drawMessages();
}
