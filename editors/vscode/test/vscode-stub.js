// A stand-in for the `vscode` module. VS Code itself can't be downloaded on these machines
// (@vscode/test-electron fetches a build at run time), so this fakes ONLY the editor window:
// documents with their undo stack, editors, dialogs and progress notifications. Everything
// behind it (the controller, the JSON-RPC connection, the Python server) is real.
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

class WorkspaceEdit {
  constructor() { this.edits = []; this.fileOps = []; }
  replace(uri, range, text) { this.edits.push({ uri, range, text }); }
  createFile(uri, options) { this.fileOps.push({ kind: 'create', uri, options }); }
  renameFile(oldUri, newUri, options) { this.fileOps.push({ kind: 'rename', oldUri, newUri, options }); }
  deleteFile(uri, options) { this.fileOps.push({ kind: 'delete', uri, options }); }
}



const changeListeners = new Emitter();

/**
 * An in-memory document with VS Code's undo grouping: an edit starts a new undo step unless
 * it is made with `undoStopBefore: false` right after another edit.
 */
class FakeDocument {
  constructor(uri, text) { this.uri = Uri.parse(uri); this.text = text; this.version = 1; this.undoStack = []; this.joinable = false; }
  offsetAt(p) {
    const lines = this.text.split('\n');
    let off = 0;
    for (let i = 0; i < p.line; i++) off += lines[i].length + 1;
    return off + p.character;
  }
  positionAt(offset) {
    const before = this.text.slice(0, offset).split('\n');
    return new Position(before.length - 1, before[before.length - 1].length);
  }
  getText(r) { return r ? this.text.slice(this.offsetAt(r.start), this.offsetAt(r.end)) : this.text; }
  get lineCount() { return this.text.split('\n').length; }
  get eol() { return 1; } // EndOfLine.LF
  lineAt(line) {
    const text = this.text.split('\n')[line];
    return { text, range: new Range(line, 0, line, text.length) };
  }
  /** One edit; `group` false joins the current undo step. */
  replace(range, text, group = true) { this.replaceAll([{ range, text }], group); }
  /**
   * One edit of several replacements whose ranges all refer to the document before it, as in
   * VS Code's edit builder: one new version and one change event (changes bottom-up).
   */
  replaceAll(replacements, group = true) {
    if (group || !this.joinable) this.undoStack.push(this.text);
    const sorted = [...replacements].sort((a, b) => this.offsetAt(b.range.start) - this.offsetAt(a.range.start));
    for (const { range, text } of sorted) {
      this.text = this.text.slice(0, this.offsetAt(range.start)) + text + this.text.slice(this.offsetAt(range.end));
    }
    this.version++;
    this.joinable = true;
    changeListeners.fire({ document: this, contentChanges: sorted.map(({ range, text }) => ({ range, text })) });
  }
  /** A user's keystrokes: their own undo step, which stays open as in VS Code (an edit with
   * `undoStopBefore: false` right after them would join it). */
  type(range, text) { this.replace(range, text); }
  undo() {
    const previous = this.undoStack.pop();
    if (previous === undefined) return false;
    const whole = new Range(new Position(0, 0), this.positionAt(this.text.length));
    this.text = previous;
    this.version++;
    this.joinable = false;
    changeListeners.fire({ document: this, contentChanges: [{ range: whole, text: previous }] });
    return true;
  }
}

/** Scripted user: instructions queued by the test; everything shown is recorded. */
const ui = {
  inputs: [], shown: [], progress: [],
  /** CancellationTokenSource of the running progress notification: its Cancel button. */
  progressCancel: undefined,
};

const documents = [];
const diagnostics = new Map();

const editors = [];
/** Settings the test sets (copyspec.<key>); unset keys give the caller's default. */
const settings = {};
/** Decorations per editor and type, as the last setDecorations call left them. */
const decorations = new Map();
/** The `after` texts per decoration type, as the last setDecorations call left them. */
const beside = new Map();
/** Comment threads alive now (the preview's inline diff). */
const threads = new Set();
const context = {};
/** `afterEdit.hook(document)`, once: runs after the next editor.edit applies, before it resolves. */
const afterEdit = { hook: undefined };
/** File operations of the WorkspaceEdits applied so far. */
const fileOps = [];
const lensProviders = new Set();
/** The code lenses every provider gives for `document` now. */
const lenses = (document) => [...lensProviders].flatMap((p) => p.provideCodeLenses(document));

const vscode = {
  Position, Range, Selection, Uri, WorkspaceEdit, CancellationTokenSource,
  EventEmitter: Emitter,
  ProgressLocation: { Notification: 15, Window: 10 },
  ViewColumn: { Beside: -2 },
  StatusBarAlignment: { Left: 1, Right: 2 },
  DiagnosticSeverity: { Error: 0, Warning: 1, Information: 2, Hint: 3 },
  ThemeColor: class { constructor(id) { this.id = id; } },
  OverviewRulerLane: { Left: 1, Center: 2, Right: 4, Full: 7 },
  EndOfLine: { LF: 1, CRLF: 2 },
  TextEditorRevealType: { Default: 0, InCenter: 1, InCenterIfOutsideViewport: 2, AtTop: 3 },
  MarkdownString: class { constructor(value) { this.value = value; } },
  CodeLens: class { constructor(range, command) { this.range = range; this.command = command; } },
  CommentMode: { Editing: 0, Preview: 1 },
  CommentThreadCollapsibleState: { Collapsed: 0, Expanded: 1 },
  commands: {
    executeCommand: async (id, key, value) => { if (id === 'setContext') context[key] = value; },
  },
  comments: {
    createCommentController: () => ({
      createCommentThread: (uri, range, comments) => {
        const thread = { uri, range, comments, dispose() { threads.delete(thread); } };
        threads.add(thread);
        return thread;
      },
      dispose() {},
    }),
  },
  window: {
    createTextEditorDecorationType: (options) => ({ options, dispose() {} }),
    onDidChangeVisibleTextEditors: () => ({ dispose() {} }),
    activeTextEditor: undefined,
    visibleTextEditors: editors,
    showInputBox: async () => ui.inputs.shift(),
    showInformationMessage: async (msg) => { ui.shown.push(msg); },
    showWarningMessage: async (msg) => { ui.shown.push(msg); },
    showErrorMessage: async (msg) => { ui.shown.push(msg); },
    setStatusBarMessage: (msg) => { ui.shown.push(msg); return { dispose() {} }; },
    withProgress: async (options, task) => {
      const cts = new CancellationTokenSource();
      ui.progressCancel = cts;
      try {
        return await task({ report: (v) => ui.progress.push(v.message) }, cts.token);
      } finally {
        if (ui.progressCancel === cts) ui.progressCancel = undefined; // not a newer one's
      }
    },
  },
  workspace: {
    getConfiguration: () => ({ get: (key, fallback) => (key in settings ? settings[key] : fallback) }),
    onDidChangeTextDocument: changeListeners.event,
    onDidCloseTextDocument: () => ({ dispose() {} }),
    textDocuments: documents,
    /** Text edits only (file operations are recorded in `fileOps` and applied nowhere). */
    applyEdit: async (edit) => {
      fileOps.push(...edit.fileOps);
      for (const document of documents) {
        const mine = edit.edits.filter((e) => e.uri.toString() === document.uri.toString());
        if (mine.length) document.replaceAll(mine, true);
      }
      return true;
    },
  },
  languages: {
    getDiagnostics: (uri) => diagnostics.get(uri.toString()) ?? [],
    /** The providers registered (the review's and the preview's code lenses). */
    registerCodeLensProvider: (selector, provider) => {
      lensProviders.add(provider);
      return { dispose() { lensProviders.delete(provider); } };
    },
  },
};

/** Opens `text` as the active editor with `selection` selected. */
function openEditor(uri, text, selection) {
  const document = new FakeDocument(uri, text);
  documents.push(document);
  const editor = {
    document, selection,
    // Each range (or DecorationOptions' range) is recorded as the text of its whole lines, or
    // for an empty range, the text of its line; `after` text of DecorationOptions in `beside`.
    setDecorations: (type, items) => {
      const ranges = items.map((i) => i.range ?? i);
      decorations.set(type, ranges.map((r) => document.getText(new Range(r.start.line, 0, r.end.line, document.text.split('\n')[r.end.line]?.length ?? 0))));
      beside.set(type, items.map((i) => i.renderOptions?.after?.contentText).filter((t) => t !== undefined));
    },
    revealRange: () => {},
    // All ranges refer to the document before the edit, as in VS Code's edit builder.
    edit: async (build, { undoStopBefore = true } = {}) => {
      const replacements = [];
      build({ replace: (range, text) => { replacements.push({ range, text }); } });
      if (replacements.length) document.replaceAll(replacements, undoStopBefore);
      // What reaches the extension host before the edit's answer (e.g. the user's keys).
      const hook = afterEdit.hook;
      afterEdit.hook = undefined;
      hook?.(document);
      return true;
    },
  };
  editors.push(editor);
  vscode.window.activeTextEditor = editor;
  return document;
}

function statusBarItem() { return { text: '', tooltip: '', show() {}, dispose() {} }; }
function outputChannel() { const lines = []; return { lines, appendLine: (l) => lines.push(l), show() {}, dispose() {} }; }

// Resolve `require('vscode')` from the compiled extension to this module.
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return request === 'vscode' ? __filename : resolve.call(this, request, ...rest);
};

module.exports = Object.assign(vscode, { stub: { ui, openEditor, diagnostics, statusBarItem, outputChannel, settings, decorations, beside, threads, context, fileOps, afterEdit, lenses } });
