// A stand-in for the `vscode` module. VS Code itself can't be downloaded on these machines
// (@vscode/test-electron fetches a build at run time), so this fakes ONLY the editor window:
// documents, dialogs, progress and tabs. Everything behind it (the controller, the JSON-RPC
// connection, the Python server) is real in the protocol test.
'use strict';
const Module = require('module');
const { CancellationTokenSource, Emitter } = require('vscode-jsonrpc');

class Position {
  constructor(line, character) { this.line = line; this.character = character; }
  isBefore(o) { return this.line < o.line || (this.line === o.line && this.character < o.character); }
}

class Range {
  constructor(a, b, c, d) {
    if (a instanceof Position) { this.start = a; this.end = b; } else { this.start = new Position(a, b); this.end = new Position(c, d); }
  }
  get isEmpty() { return this.start.line === this.end.line && this.start.character === this.end.character; }
  contains(p) { return !p.isBefore(this.start) && !this.end.isBefore(p); }
}

class Selection extends Range {
  constructor(anchor, active) { super(anchor, active); this.anchor = anchor; this.active = active; }
}

class Uri {
  constructor(s) { this.s = s; }
  static parse(s) { return new Uri(s); }
  static file(p) { return new Uri(`file://${p}`); }
  toString() { return this.s; }
}

class TabInputTextDiff { constructor(original, modified) { this.original = original; this.modified = modified; } }

class WorkspaceEdit {
  constructor() { this.edits = []; }
  replace(uri, range, text) { this.edits.push({ uri, range, text }); }
}

const changeListeners = new Emitter();

/** An in-memory document; every applied WorkspaceEdit is one undo step, as in VS Code. */
class FakeDocument {
  constructor(uri, text) { this.uri = Uri.parse(uri); this.text = text; this.version = 1; this.undoStack = []; }
  offsetAt(p) {
    const lines = this.text.split('\n');
    let off = 0;
    for (let i = 0; i < p.line; i++) off += lines[i].length + 1;
    return off + p.character;
  }
  getText(r) { return r ? this.text.slice(this.offsetAt(r.start), this.offsetAt(r.end)) : this.text; }
  replace(range, text) {
    this.text = this.text.slice(0, this.offsetAt(range.start)) + text + this.text.slice(this.offsetAt(range.end));
    this.version++;
    changeListeners.fire({ document: this, contentChanges: [{ range, text }] });
  }
  undo() {
    const previous = this.undoStack.pop();
    if (previous === undefined) return false;
    this.text = previous;
    this.version++;
    return true;
  }
}

/** Scripted user: answers queued by the test, everything shown is recorded. */
const ui = {
  inputs: [], answers: [], shown: [], progress: [], diffs: [], closedTabs: [], openTabs: [],
  /** CancellationTokenSource of the running progress notification: its Cancel button. */
  progressCancel: undefined,
};

const documents = [];
const diagnostics = new Map();

const vscode = {
  Position, Range, Selection, Uri, TabInputTextDiff, WorkspaceEdit, CancellationTokenSource,
  EventEmitter: Emitter,
  ProgressLocation: { Notification: 15, Window: 10 },
  ViewColumn: { Beside: -2 },
  StatusBarAlignment: { Left: 1, Right: 2 },
  DiagnosticSeverity: { Error: 0, Warning: 1, Information: 2, Hint: 3 },
  window: {
    activeTextEditor: undefined,
    showInputBox: async () => ui.inputs.shift(),
    showInformationMessage: async (msg, ...items) => { ui.shown.push(msg); return items.length ? ui.answers.shift() : undefined; },
    showWarningMessage: async (msg) => { ui.shown.push(msg); },
    showErrorMessage: async (msg) => { ui.shown.push(msg); },
    setStatusBarMessage: (msg) => { ui.shown.push(msg); return { dispose() {} }; },
    withProgress: async (options, task) => {
      const cts = new CancellationTokenSource();
      ui.progressCancel = cts;
      try {
        return await task({ report: (v) => ui.progress.push(v.message) }, cts.token);
      } finally {
        ui.progressCancel = undefined;
      }
    },
    tabGroups: {
      get all() { return [{ tabs: ui.openTabs }]; },
      close: async (tabs) => { for (const t of tabs) { ui.closedTabs.push(t); ui.openTabs.splice(ui.openTabs.indexOf(t), 1); } },
    },
  },
  workspace: {
    textDocuments: documents,
    onDidChangeTextDocument: changeListeners.event,
    applyEdit: async (edit) => {
      for (const { uri, range, text } of edit.edits) {
        const doc = documents.find((d) => d.uri.toString() === uri.toString());
        doc.undoStack.push(doc.text);
        doc.replace(range, text);
      }
      return true;
    },
  },
  languages: { getDiagnostics: (uri) => diagnostics.get(uri.toString()) ?? [] },
  commands: {
    executeCommand: async (id, left, right) => {
      if (id !== 'vscode.diff') throw new Error(`unexpected command ${id}`);
      ui.diffs.push({ left, right });
      ui.openTabs.push({ input: new TabInputTextDiff(left, right) });
    },
  },
};

/** Opens `text` as the active editor with `selection` selected. */
function openEditor(uri, text, selection) {
  const document = new FakeDocument(uri, text);
  documents.push(document);
  vscode.window.activeTextEditor = { document, selection };
  return document;
}

function statusBarItem() { return { text: '', tooltip: '', show() {}, dispose() {} }; }
function outputChannel() { const lines = []; return { lines, appendLine: (l) => lines.push(l), show() {}, dispose() {} }; }

// Resolve `require('vscode')` from the compiled extension to this module.
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return request === 'vscode' ? __filename : resolve.call(this, request, ...rest);
};

module.exports = Object.assign(vscode, { stub: { ui, openEditor, diagnostics, statusBarItem, outputChannel, documents } });
