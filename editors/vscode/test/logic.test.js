// Unit tests of the pure logic (out/logic.js has no `vscode` import).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const {
  initializationOptions, formatStats, statusBarText, formatStatus, endOf, trackRange, SessionStore, ChunkText,
} = require('../out/logic');

const pos = (line, character) => ({ line, character });
const range = (a, b, c, d) => ({ start: pos(a, b), end: pos(c, d) });

test('initializationOptions passes set values under camelCase keys and drops unset ones', () => {
  const settings = { model: '/m', device: 'cpu', dtype: '', maxNewTokens: 64, checkCommand: [], gamma: null, logLevel: 'debug' };
  assert.deepEqual(initializationOptions((k) => settings[k]), { model: '/m', device: 'cpu', maxNewTokens: 64, logLevel: 'debug' });
  assert.deepEqual(initializationOptions((k) => (k === 'checkCommand' ? ['ruff', 'check'] : undefined)),
    { checkCommand: ['ruff', 'check'] });
});

test('initializationOptions sends the pool URL as `server` and remote code only when on', () => {
  const settings = { poolUrl: 'http://127.0.0.1:8000', trustRemoteCode: false };
  assert.deepEqual(initializationOptions((k) => settings[k]), { server: 'http://127.0.0.1:8000' });
  assert.deepEqual(initializationOptions((k) => (k === 'trustRemoteCode' ? true : undefined)),
    { trustRemoteCode: true });
});

test('initializationOptions forwards the prediction mode, and leaves it to the server when unset', () => {
  assert.deepEqual(initializationOptions((k) => (k === 'prediction' ? 'off' : undefined)), { prediction: 'off' });
  assert.deepEqual(initializationOptions((k) => (k === 'prediction' ? '' : undefined)), {});
});

test('initializationOptions forwards costAware off and the compile mode, and leaves them to the server when unset', () => {
  const settings = { costAware: false, compile: 'on' };
  assert.deepEqual(initializationOptions((k) => settings[k]), { costAware: false, compile: 'on' });
  assert.deepEqual(initializationOptions((k) => ({ costAware: null, compile: '' })[k]), {});
  const properties = require('../package.json').contributes.configuration.properties;
  assert.deepEqual(properties['copyspec.compile'].enum, ['', 'auto', 'on', 'off']);
});

test('every server setting is contributed to the configuration, and prediction offers the server\'s modes', () => {
  const { SERVER_SETTINGS } = require('../out/logic');
  const properties = require('../package.json').contributes.configuration.properties;
  for (const key of SERVER_SETTINGS) assert.ok(`copyspec.${key}` in properties, key);
  assert.deepEqual(properties['copyspec.prediction'].enum, ['', 'auto', 'on', 'off']);
});

test('formatStats shows tokens/s and % copied from the snake_case stats', () => {
  assert.equal(formatStats({ tokens_per_second: 41.26, copied_share: 0.634, new_tokens: 80 }), '41.3 tok/s · 63% copied · 80 tokens');
  assert.equal(formatStats({ copied_share: 0 }), '0% copied');
  assert.equal(formatStats(undefined), '');
});

test('statusBarText names the model directory and its state', () => {
  assert.equal(statusBarText({ version: '0.1', model: '/home/me/models/qwen-0.5b/', state: 'loading' }), 'CopySpec: qwen-0.5b (loading)');
  assert.equal(statusBarText(undefined), 'CopySpec: starting');
  const text = formatStatus({ version: '0.1', model: 'm', device: 'cpu', dtype: 'float32', state: 'error', error: 'no weights', queue: 2, sessions: [] });
  assert.match(text, /no weights/);
  assert.match(text, /queue 2, sessions 0/);
});

test('endOf counts UTF-16 units and every line break style', () => {
  assert.deepEqual(endOf(pos(3, 4), 'abc'), pos(3, 7));
  assert.deepEqual(endOf(pos(3, 4), 'a\nbc'), pos(4, 2));
  assert.deepEqual(endOf(pos(0, 0), 'a\r\nb\rcd\n'), pos(3, 0));
  assert.deepEqual(endOf(pos(0, 1), '😀'), pos(0, 3)); // a surrogate pair is two units
});

test('trackRange shifts the region for edits before it and keeps it for edits after', () => {
  const region = range(2, 4, 3, 1);
  assert.deepEqual(trackRange(region, { range: range(0, 0, 0, 0), text: 'x\n' }), range(3, 4, 4, 1));
  assert.deepEqual(trackRange(region, { range: range(2, 0, 2, 1), text: '' }), range(2, 3, 3, 1));
  assert.deepEqual(trackRange(region, { range: range(1, 5, 2, 2), text: 'ab' }), range(1, 9, 2, 1));
  assert.deepEqual(trackRange(region, { range: range(2, 4, 2, 4), text: 'ab' }), range(2, 6, 3, 1)); // typed at its start
  assert.deepEqual(trackRange(region, { range: range(3, 1, 3, 1), text: 'zz' }), region); // typed at its end
  assert.deepEqual(trackRange(region, { range: range(5, 0, 6, 0), text: '' }), region);
});

test('trackRange drops the region when an edit touches it', () => {
  const region = range(2, 4, 3, 1);
  assert.equal(trackRange(region, { range: range(2, 5, 2, 5), text: 'x' }), undefined);
  assert.equal(trackRange(region, { range: range(1, 0, 2, 5), text: '' }), undefined);
  assert.equal(trackRange(region, { range: range(3, 0, 4, 0), text: '' }), undefined);
  assert.equal(trackRange(region, { range: range(0, 0, 9, 0), text: '' }), undefined);
});

test('SessionStore prefers the session under the cursor and forgets edited regions', () => {
  const s = new SessionStore();
  s.set('file:///a.py', 's1', range(0, 0, 2, 0));
  s.set('file:///a.py', 's2', range(5, 0, 6, 0));
  assert.equal(s.get('file:///a.py', pos(1, 3)).session, 's1');
  assert.equal(s.get('file:///a.py', pos(9, 0)).session, 's2');
  assert.equal(s.get('file:///b.py'), undefined);
  s.change('file:///a.py', [{ range: range(0, 0, 0, 0), text: '\n' }]);
  assert.deepEqual(s.get('file:///a.py', pos(6, 0)).range, range(6, 0, 7, 0));
  s.change('file:///a.py', [{ range: range(6, 1, 6, 2), text: '' }]);
  assert.equal(s.get('file:///a.py').session, 's1');
  s.set('file:///a.py', 's1', range(0, 0, 1, 0)); // a new turn moves a session to the end
  assert.equal(s.get('file:///a.py').session, 's1');
});

test('ChunkText rebuilds the answer from chunk changes in UTF-16 units and rejects a gap', () => {
  const chunk = (seq, start, insert, length, extra = {}) => ({ seq, start, insert, length, stats: {}, ...extra });
  const text = new ChunkText();
  assert.equal(text.apply(chunk(1, 0, 'a😀', 3)), 'a😀');
  assert.equal(text.apply(chunk(2, 3, 'b\n', 5)), 'a😀b\n');
  assert.equal(text.apply(chunk(3, 3, 'X', 4)), 'a😀X', 'a change that takes text back');
  assert.equal(text.apply(chunk(4, 4, ' é', 6, { final: true, text: 'a😀X é' })), 'a😀X é');
  assert.throws(() => new ChunkText().apply(chunk(1, 0, 'ab', 3)), /does not rebuild/);
  const gap = new ChunkText();
  gap.apply(chunk(1, 0, 'a', 1));
  assert.throws(() => gap.apply(chunk(3, 1, 'b', 2)), /lost/);
  assert.throws(() => new ChunkText().apply(chunk(1, 0, 'a', 1, { final: true, text: 'b' })), /does not rebuild/);
});
