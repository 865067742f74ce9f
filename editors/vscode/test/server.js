// Starts the real `copyspec-lsp --stdio` on a tiny model and talks to it with vscode-jsonrpc,
// the library vscode-languageclient is built on. `s.open`/`s.change` play the part of VS Code's
// document sync: every change to a synced document is sent as an incremental didChange.
//
// The server runs with COPYSPEC_TEST_GATE naming a file in its own temp dir: the real server's
// test-only gate (copyspec_lsp/adapters/gate.py). While `s.hold()` keeps that file in place, a streaming
// request holds after each streamed edit the editor is up to date with (and after its final
// edit, before answering) until `s.release()`, a cancel, or typing inside its region. Tests that
// act mid-stream use it so that the tiny model, which copies thousands of tokens a second,
// cannot finish first. It also runs with COPYSPEC_TEST_ANSWER naming another file there: the
// test-only scripted answer (copyspec_lsp/adapters/scripted.py). While `s.script(text)` keeps that file
// in place, every turn answers `text` instead of the tiny model's gibberish, streamed through
// the real path (shaping, streamed edits, gate, result), so a test knows the answer's hunks.
// Nothing else about the server or its answers is faked.
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const rpc = require('vscode-jsonrpc/node');
const { TextDocument } = require('vscode-languageserver-textdocument');

const ROOT = path.resolve(__dirname, '../../..');

/** copyspec-lsp from $COPYSPEC_LSP, the active venv, the repo's .venv, or PATH. */
function findServer() {
  const candidates = [process.env.COPYSPEC_LSP,
    process.env.VIRTUAL_ENV && path.join(process.env.VIRTUAL_ENV, 'bin', 'copyspec-lsp'),
    path.join(ROOT, '.venv', 'bin', 'copyspec-lsp'),
    ...(process.env.PATH || '').split(path.delimiter).map((d) => path.join(d, 'copyspec-lsp'))];
  const found = candidates.find((c) => c && fs.existsSync(c));
  if (!found) throw new Error('copyspec-lsp not found: pip install -e . in a venv, activate it, or set COPYSPEC_LSP');
  return found;
}

/** A tiny random model directory (gibberish but deterministic output; loads in about a second). */
function buildTinyModel(server) {
  const python = fs.existsSync(path.join(path.dirname(server), 'python'))
    ? path.join(path.dirname(server), 'python') : 'python3';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'copyspec-vscode-'));
  execFileSync(python, ['-c', 'import sys; from pathlib import Path; sys.path.insert(0, "tests"); '
    + 'from tiny_models import loaded, save; save(loaded("llama", mixing=0.1), Path(sys.argv[1]))', path.join(dir, 'model')],
  { cwd: ROOT, timeout: 120000, stdio: ['ignore', 'ignore', 'inherit'] });
  return dir;
}

/**
 * `versioned` (default true) advertises workspace.workspaceEdit.documentChanges, as
 * vscode-languageclient does, so streamed edits come as version-stamped TextDocumentEdits.
 */
async function startServer({ versioned = true } = {}) {
  const server = findServer();
  const dir = buildTinyModel(server);
  const gate = path.join(dir, 'gate');
  const answer = path.join(dir, 'answer');
  const proc = spawn(server, ['--stdio'], {
    cwd: dir, env: { ...process.env, COPYSPEC_TEST_GATE: gate, COPYSPEC_TEST_ANSWER: answer }, stdio: ['pipe', 'pipe', 'inherit'],
  });
  const conn = rpc.createMessageConnection(new rpc.StreamMessageReader(proc.stdout), new rpc.StreamMessageWriter(proc.stdin));
  const s = {
    proc, conn, dir, model: path.join(dir, 'model'), docs: new Map(), edits: [], chunks: [], progress: [], messages: [], sent: [],
    /** Each applyEdit's answer: {edit, answer}. */
    answers: [],
    /** Called with each applyEdit's params before it is answered: where a test plays the user
     * typing between the server computing an edit and the editor receiving it. */
    beforeApply: undefined,
  };

  /** Closes the gate: streams hold after their next up-to-date edit (see the top of this file). */
  s.hold = () => fs.writeFileSync(gate, '');
  s.holding = () => fs.existsSync(gate);
  let stepping;
  /** Opens the gate: held streams go on and stay free until the next `hold`. A `step` still
   * waiting for its edit is given up (it rejects), so it cannot close the gate later. */
  s.release = () => {
    fs.rmSync(gate, { force: true });
    const step = stepping;
    stepping = undefined;
    step?.fail(new Error('released before the stepped edit came'));
  };
  /**
   * Lets a held stream go on for exactly one more applyEdit: opens the gate and closes it again
   * when the next applyEdit arrives, before `beforeApply` runs and before it is answered (the
   * server looks at the gate only once the answer and its didChange are in). So the stream holds
   * again after that edit, or after the edits that compute it again if it is refused. Resolves
   * with that edit's params once it is answered; rejects after `ms` without one.
   */
  s.step = (ms = 60000) => {
    if (!s.holding()) throw new Error('step() needs a held stream (hold() first)');
    if (stepping) throw new Error('step() while a step is under way');
    const answered = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stepping = undefined;
        fs.rmSync(gate, { force: true });
        reject(new Error(`step: no applyEdit within ${ms} ms`));
      }, ms);
      stepping = {
        done: (p) => { clearTimeout(timer); resolve(p); },
        fail: (e) => { clearTimeout(timer); reject(new Error(`step: ${e.message}`)); },
      };
    });
    fs.rmSync(gate, { force: true });
    return answered;
  };
  /** Every turn answers `text` (the model's raw answer: fenced or not) until `unscript`. */
  s.script = (text) => fs.writeFileSync(answer, text);
  s.unscript = () => fs.rmSync(answer, { force: true });
  /** Scripts `text` for the rest of test `t`. */
  s.scriptFor = (t, text) => {
    s.script(text);
    t.after(() => s.unscript());
  };
  /** Holds streams for the rest of test `t` (released when it ends, pass or fail). */
  s.holdFor = (t) => {
    s.hold();
    t.after(() => s.release());
  };

  // Server → client requests and notifications, as VS Code would answer them.
  // Edits go to the Controller when one is listening (it edits the stub documents, whose
  // changes come back through s.change), else straight into our copies of the documents.
  let applyEdit;
  conn.onRequest('workspace/applyEdit', async (p) => {
    s.edits.push(p);
    const stepped = stepping;
    stepping = undefined;
    if (stepped) s.hold();
    s.beforeApply?.(p);
    const answer = applyEdit ? await applyEdit(p) : s.applyToCopies(p.edit);
    s.answers.push({ edit: p, answer });
    stepped?.done(p);
    return answer;
  });
  conn.onRequest('window/workDoneProgress/create', () => null);
  conn.onNotification('$/progress', (p) => s.progress.push(p));
  conn.onNotification('window/showMessage', (p) => s.messages.push(p));
  conn.onNotification('window/logMessage', () => {});
  const listeners = { 'copyspec/chunk': new Set(), 'copyspec/pending': new Set() };
  s.pending = [];
  conn.onNotification('copyspec/chunk', (p) => { s.chunks.push(p); listeners['copyspec/chunk'].forEach((l) => l(p)); });
  conn.onNotification('copyspec/pending', (p) => { s.pending.push(p); listeners['copyspec/pending'].forEach((l) => l(p)); });
  conn.listen();

  /** What the extension's Controller gets instead of a LanguageClient; records each request. */
  s.client = {
    sendRequest: (method, params, token) => { s.sent.push({ method, params }); return conn.sendRequest(method, params, token); },
    onNotification: (method, handler) => {
      if (!listeners[method]) throw new Error(`unexpected notification ${method}`);
      listeners[method].add(handler);
      return { dispose: () => listeners[method].delete(handler) };
    },
    onRequest: (method, handler) => {
      if (method !== 'workspace/applyEdit') throw new Error(`unexpected request handler ${method}`);
      applyEdit = handler;
      return { dispose: () => { if (applyEdit === handler) applyEdit = undefined; } };
    },
  };

  s.open = (uri, text, languageId = 'python') => {
    s.docs.set(uri, TextDocument.create(uri, languageId, 1, text));
    conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId, version: 1, text } });
  };
  /** Applies LSP text edits to our copy and tells the server, like an editor would. */
  s.change = (uri, edits) => {
    const doc = s.docs.get(uri);
    const contentChanges = [...edits].sort((a, b) => doc.offsetAt(b.range.start) - doc.offsetAt(a.range.start))
      .map((e) => ({ range: e.range, text: e.newText }));
    const next = TextDocument.update(doc, contentChanges, doc.version + 1);
    s.docs.set(uri, next);
    conn.sendNotification('textDocument/didChange', { textDocument: { uri, version: next.version }, contentChanges });
  };
  s.text = (uri) => s.docs.get(uri).getText();
  /** What a spec-following editor does with a WorkspaceEdit, on our copies: a TextDocumentEdit
   * for another version than the document's refuses the whole edit, before anything changes. */
  s.applyToCopies = (edit) => {
    if (edit.documentChanges) {
      for (const { textDocument: { uri, version } } of edit.documentChanges) {
        const current = s.docs.get(uri)?.version;
        if (typeof version === 'number' && version !== current) {
          return { applied: false, failureReason: `stale: version ${version}, document at ${current}` };
        }
      }
      for (const { textDocument: { uri }, edits } of edit.documentChanges) s.change(uri, edits);
    } else {
      for (const [uri, edits] of Object.entries(edit.changes || {})) s.change(uri, edits);
    }
    return { applied: true };
  };

  await conn.sendRequest('initialize', {
    processId: process.pid, rootUri: null, workspaceFolders: null,
    capabilities: {
      workspace: { applyEdit: true, ...(versioned ? { workspaceEdit: { documentChanges: true } } : {}) },
      window: { workDoneProgress: true }, general: { positionEncodings: ['utf-16'] },
    },
    initializationOptions: { model: s.model, device: 'cpu' },
  });
  conn.sendNotification('initialized', {});

  s.stop = async () => {
    s.release();
    try {
      await Promise.race([conn.sendRequest('shutdown'), new Promise((r) => setTimeout(r, 5000))]);
      conn.sendNotification('exit');
    } finally {
      await new Promise((r) => { if (proc.exitCode !== null) r(); else { proc.once('exit', r); setTimeout(() => { proc.kill('SIGKILL'); r(); }, 5000); } });
      conn.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  return s;
}

/** Polls until `cond()` is truthy; fails the test after `ms`. */
async function waitFor(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `promise`, or a failure naming `what` if it has not settled after `ms` (a held stream that
 * nothing stops would otherwise hang its test). */
async function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

module.exports = { startServer, waitFor, within };
