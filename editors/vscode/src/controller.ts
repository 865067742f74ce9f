// The extension's commands. The language client is passed in as `Rpc`, which both
// vscode-languageclient's LanguageClient and a vscode-jsonrpc MessageConnection satisfy, so the
// protocol test drives this same code against the real server.
//
// Refinements stream live into the buffer as ONE undo step: the server streams (apply
// "stream") and follows the region through didChange, cancelling when the user types inside
// it; this class applies each of the server's workspace/applyEdit calls itself with
// editor.edit(..., { undoStopBefore: false }) instead of vscode-languageclient's default,
// which would make every chunk its own undo step (typing elsewhere while it streams splits
// that step; the finished answer is then put in again as one, see `oneUndoStep`). Each
// streamed edit is the minimal change inside the region, a TextDocumentEdit stamped with
// the document version the server computed it against: one for an older version is
// refused ({applied: false}) before anything is applied, and the server computes it again
// against the newer text. Where the region stands comes from the `copyspec/pending`
// announcement sent before each edit (`before` / `after`), not from the edit's ranges. While
// it streams, the original's not-yet-rewritten rest stays in the buffer below the streamed
// text, dimmed (StreamView); cancelling puts the original back (copyspec.cancelKeepsPartial
// keeps the partial answer).
// With copyspec.applyMode "preview" the answer streams into an inline diff (PreviewView)
// and nothing edits the buffer. Either way, the finished answer's hunks (sent with the result)
// are then offered for review one by one (Review): accept or reject each, or all.
import * as vscode from 'vscode';
import {
  Change, Chunk, ChunkText, Range, SessionStore, Stats, Status, TextEdit, WorkspaceEdit, formatStats, formatStatus,
  singleDocumentEdit, staleReason, statusBarText, trackRange,
} from './logic';
import { WireHunk } from './hunks';
import { Review } from './review';
import { PreviewView, StreamView } from './views';

export interface Rpc {
  sendRequest<R>(method: string, params: unknown, token?: vscode.CancellationToken): Promise<R>;
  onNotification(method: string, handler: (params: any) => void): vscode.Disposable;
  onRequest(method: string, handler: (params: any) => unknown): vscode.Disposable;
}

interface ApplyEditParams { label?: string; edit: WorkspaceEdit }
interface ApplyEditResult { applied: boolean; failureReason?: string }
interface JobResult {
  session: string; text: string; range: Range; stats: Stats; turns?: unknown[]; ok?: boolean;
  /** With apply "none": the range the answer would replace. */
  replacedRange?: Range;
  /** The answer against the original, as whole-row hunks (copyspec_lsp/flow/hunks.py). */
  hunks?: WireHunk[];
}
/** `copyspec/pending`, sent before each streamed edit: `range` is where the original's pending
 * lines stand once the edit is applied; `before` / `after` the whole region before and after. */
interface Pending { uri: string; session: string; range: Range | null; before?: Range; after?: Range }
/** A code action's command argument (`copyspec.refine` / `copyspec.fix`). */
export interface ActionArgument { uri: string; range: Range; instruction?: string; diagnostics?: unknown[] }

interface Job {
  uri: string;
  editor: vscode.TextEditor;
  preview: boolean;
  cts: vscode.CancellationTokenSource;
  progress?: vscode.Progress<{ message?: string }>;
  /** Document version right after this job's last edit: the next edit joins its undo step. */
  version?: number;
  /** Someone else changed the document between two of this job's edits, so the stream is
   * more than one undo step (rejoined when it finishes: `oneUndoStep`). */
  split?: boolean;
  /** The region's text before the first applied edit (at its `before`): what a cancel restores. */
  original?: string;
  /** Where the region stands now: the last applied edit's `after`, then moved by changes
   * outside it (undefined once a change touched it, or when no announcement said). */
  region?: vscode.Range;
  /** What the region held right after the last applied edit: a cancel restores only over that. */
  lastText?: string;
  /** `copyspec/pending` announcements not yet matched: one is taken per applyEdit of this
   * job, applied or refused, so they stay aligned with the edits. */
  pending: Pending[];
  /** The edit being applied, if any: a cancel waits for it before restoring. */
  applying?: Thenable<unknown>;
  /** While this job's own edit is being applied: the document changes seen meanwhile. */
  editing?: Editing;
  /** The answer so far, rebuilt from the turn's `copyspec/chunk` changes. */
  chunks: ChunkText;
  /** Preview mode: the answer so far. */
  text?: string;
  requested: Range;
  verb: 'refining' | 'fixing';
}

/**
 * The document changes seen while a job's edit is in flight. The editor applies the edit only
 * to the version it was made for (`base`), so if it is applied, the change to `base + 1` is
 * that edit and any later one someone else's (the user's keys can arrive in the same batch as
 * the edit's answer, so the document may already be past the edit when `editor.edit`
 * resolves); if it is refused, every change is someone else's.
 */
interface Editing {
  base: number;
  /** Where the region stands once the edit is applied (the announcement's `after`). */
  after?: vscode.Range;
  /** The region's text right after the edit, read when its change came in. */
  text?: string;
  /** Changes by version: what the region must still follow once the edit's outcome is known. */
  seen: { version: number; changes: Change[] }[];
}

/** The user's own cancel (quiet) and a stop decided by the server (the message says why). */
const REQUEST_CANCELLED = -32800;
const SERVER_CANCELLED = -32802;

export class Controller implements vscode.Disposable {
  readonly sessions = new SessionStore();
  private readonly jobs = new Map<string, Job>();
  private readonly disposables: vscode.Disposable[] = [];
  private readonly stream = new StreamView();
  readonly preview = new PreviewView();
  readonly review = new Review();

  constructor(private readonly rpc: Rpc, private readonly statusBar: vscode.StatusBarItem,
              private readonly log: vscode.OutputChannel) {
    this.disposables.push(
      rpc.onNotification('copyspec/chunk', (p: Chunk) => this.onChunk(p)),
      rpc.onNotification('copyspec/pending', (p: Pending) => this.jobs.get(p.uri)?.pending.push(p)),
      rpc.onRequest('workspace/applyEdit', (p: ApplyEditParams) => this.applyEdit(p)),
      vscode.workspace.onDidChangeTextDocument((e) => {
        const uri = e.document.uri.toString();
        const changes = e.contentChanges.map((c): Change => ({ range: toLsp(c.range), text: c.text }));
        this.sessions.change(uri, changes, this.review.isEditing(uri));
        this.followRegion(uri, e.document, changes);
        this.review.change(uri, changes);
      }),
      this.stream, this.preview, this.review,
    );
  }

  dispose(): void {
    for (const job of this.jobs.values()) job.cts.cancel();
    this.disposables.forEach((d) => d.dispose());
  }

  /** The code action "refine selection…": ask for the instruction, then refine that range. */
  async refineAction(arg: ActionArgument): Promise<void> {
    const editor = this.editorFor(arg.uri);
    if (!editor) return;
    const instruction = arg.instruction ?? await vscode.window.showInputBox({
      prompt: 'CopySpec: how should the selection change?', placeHolder: 'e.g. add type hints' });
    if (!instruction) return;
    await this.run(editor, 'copyspec/refine', arg.range, { instruction });
  }

  /** The quick fix "fix this error": the diagnostic travels with the request. */
  async fixAction(arg: ActionArgument): Promise<void> {
    const editor = this.editorFor(arg.uri);
    if (!editor) return;
    await this.run(editor, 'copyspec/fix', arg.range, { diagnostics: arg.diagnostics ?? [] });
  }

  /** Accepts the hunk `id` of `uri` (a code lens), else the hunk at the cursor. */
  acceptHunk(uri?: string, id?: number): Promise<void> {
    return this.review.accept(this.reviewed(uri), id);
  }

  /** Rejects the hunk `id` of `uri` (a code lens), else the hunk at the cursor. */
  rejectHunk(uri?: string, id?: number): Promise<void> {
    return this.review.reject(this.reviewed(uri), id);
  }

  acceptAll(): Promise<void> {
    return this.review.acceptAll(this.reviewed());
  }

  rejectAll(): Promise<void> {
    return this.review.rejectAll(this.reviewed());
  }

  nextHunk(forward = true): void {
    this.review.move(this.reviewed(), forward);
  }

  /** The editor of `uri`, or the active one. */
  private reviewed(uri?: string): vscode.TextEditor | undefined {
    return uri ? this.editorFor(uri) : this.editor();
  }

  async refineSelection(): Promise<void> {
    const editor = this.editor();
    if (!editor) return;
    const instruction = await vscode.window.showInputBox({
      prompt: 'CopySpec: how should the selection change? (no selection: the enclosing function)',
      placeHolder: 'e.g. add type hints' });
    if (!instruction) return;
    await this.run(editor, 'copyspec/refine', toLsp(editor.selection), { instruction });
  }

  async followUp(): Promise<void> {
    const editor = this.editor();
    if (!editor) return;
    const last = this.sessions.get(editor.document.uri.toString(), editor.selection.active);
    if (!last) {
      void vscode.window.showInformationMessage('CopySpec: no earlier refinement in this file to follow up.');
      return;
    }
    const instruction = await vscode.window.showInputBox({ prompt: 'CopySpec follow-up: what next?' });
    if (!instruction) return;
    await this.run(editor, 'copyspec/refine', last.range, { instruction, session: last.session });
  }

  async fixAtCursor(): Promise<void> {
    const editor = this.editor();
    if (!editor) return;
    const cursor = editor.selection.active;
    const diagnostics = vscode.languages.getDiagnostics(editor.document.uri)
      .filter((d) => d.range.contains(cursor) || d.range.start.line === cursor.line);
    if (diagnostics.length === 0) {
      void vscode.window.showInformationMessage('CopySpec: no diagnostic at the cursor.');
      return;
    }
    // An empty range lets the server widen it to the enclosing function or statement.
    const range = editor.selection.isEmpty ? { start: toLsp(cursor), end: toLsp(cursor) } : toLsp(editor.selection);
    await this.run(editor, 'copyspec/fix', range, { diagnostics: diagnostics.map(toLspDiagnostic) });
  }

  /** Cancels the active document's request, or every request when it has none. */
  cancel(): void {
    const uri = vscode.window.activeTextEditor?.document.uri.toString();
    const own = uri !== undefined && this.jobs.has(uri);
    const targets = [...this.jobs.values()].filter((j) => !own || j.uri === uri);
    if (targets.length === 0) void vscode.window.showInformationMessage('CopySpec: nothing running.');
    targets.forEach((j) => j.cts.cancel());
  }

  async showStatus(): Promise<void> {
    try {
      const status = await this.refreshStatus();
      this.log.appendLine(formatStatus(status));
      this.log.show(true);
    } catch (e) {
      void vscode.window.showErrorMessage(`CopySpec: status failed: ${message(e)}`);
    }
  }

  async refreshStatus(): Promise<Status> {
    const status = await this.rpc.sendRequest<Status>('copyspec/status', {});
    this.statusBar.text = statusBarText(status);
    this.statusBar.tooltip = formatStatus(status);
    return status;
  }

  private editor(): vscode.TextEditor | undefined {
    const editor = vscode.window.activeTextEditor;
    if (!editor) void vscode.window.showErrorMessage('CopySpec: open a file first.');
    return editor;
  }

  private editorFor(uri: string): vscode.TextEditor | undefined {
    const editor = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === uri);
    if (!editor) void vscode.window.showErrorMessage('CopySpec: the document is not open in an editor.');
    return editor;
  }

  /** A running job's region moves with changes around it; one inside it loses it (no restore). */
  private followRegion(uri: string, document: vscode.TextDocument, changes: Change[]): void {
    const job = this.jobs.get(uri);
    if (!job) return;
    if (job.editing) { // sorted out once the edit's outcome is known (Editing)
      const editing = job.editing;
      if (document.version === editing.base + 1 && editing.after) editing.text = document.getText(editing.after);
      editing.seen.push({ version: document.version, changes });
      return;
    }
    job.region = followed(job.region, changes);
  }

  private setBusy(job: Job | undefined, text?: string): void {
    void vscode.commands.executeCommand('setContext', 'copyspec.streaming', job !== undefined);
    if (job) this.statusBar.text = `$(sync~spin) CopySpec: ${job.verb} · ${text ?? 'waiting for the model…'}`;
  }

  private async run(editor: vscode.TextEditor, method: string, range: Range, extra: Record<string, unknown>): Promise<void> {
    const uri = editor.document.uri.toString();
    if (this.jobs.has(uri)) {
      // Edits carry no request id, so two requests in one document could not be told apart.
      void vscode.window.showWarningMessage('CopySpec: a request is already running in this file (Cancel it first).');
      return;
    }
    const config = vscode.workspace.getConfiguration('copyspec');
    const preview = config.get<string>('applyMode', 'stream') === 'preview';
    this.review.end(uri); // a new request leaves the buffer as the review left it
    const job: Job = {
      uri, editor, preview, cts: new vscode.CancellationTokenSource(), pending: [], chunks: new ChunkText(), requested: range,
      verb: method === 'copyspec/fix' ? 'fixing' : 'refining',
    };
    this.jobs.set(uri, job);
    const verb = job.verb;
    this.setBusy(job);
    let result: JobResult | null;
    try {
      result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `CopySpec: ${verb}`, cancellable: true },
        (progress, token) => {
          job.progress = progress;
          token.onCancellationRequested(() => job.cts.cancel());
          const params = { textDocument: { uri }, range, apply: preview ? 'none' : 'stream', ...extra };
          return this.rpc.sendRequest<JobResult>(method, params, job.cts.token);
        });
    } catch (e) {
      const code = (e as { code?: number }).code;
      const byUser = job.cts.token.isCancellationRequested || code === REQUEST_CANCELLED;
      await this.stopped(job, byUser);
      if (byUser) {
        vscode.window.setStatusBarMessage('CopySpec: cancelled', 5000);
      } else if (code === SERVER_CANCELLED) { // typing inside the region, a newer request, ...
        void vscode.window.showWarningMessage(`CopySpec: ${message(e)}`);
      } else {
        void vscode.window.showErrorMessage(`CopySpec: ${message(e)}`);
      }
      return;
    } finally {
      if (this.jobs.get(uri) === job) this.jobs.delete(uri);
      this.setBusy(undefined);
      this.refreshStatus().catch(() => undefined);
    }
    this.stream.clear(editor);
    if (!result || result.stats?.cancelled) { // defensive: a cancel answered without an error
      await this.stopped(job, true);
      vscode.window.setStatusBarMessage('CopySpec: cancelled', 5000);
      return;
    }
    if (preview) {
      this.preview.clear();
      this.sessions.set(uri, result.session, result.replacedRange ?? result.range);
      this.review.start(editor.document, result.hunks ?? [], false);
      this.log.appendLine(`${method} ${result.session} (preview): ${formatStats(result.stats)}`);
      return;
    }
    await this.oneUndoStep(job);
    this.sessions.set(uri, result.session, result.range);
    // Typing above the region after the server answered moved it: the hunks move with it.
    const shift = job.region ? job.region.start.line - result.range.start.line : 0;
    this.review.start(editor.document, result.hunks ?? [], true, shift);
    const summary = formatStats(result.stats);
    this.log.appendLine(`${method} ${result.session}: ${summary}`);
    if (result.ok === false) {
      void vscode.window.showWarningMessage(
        `CopySpec: the check still fails after ${result.turns?.length ?? 0} turns (undo to revert).`);
    } else {
      vscode.window.setStatusBarMessage(`CopySpec: done, ${summary}`, 5000);
    }
  }

  /**
   * After a stop: clear the decorations; the user's own cancel puts the original back unless
   * copyspec.cancelKeepsPartial (a stop by the server, e.g. typing inside the region, keeps
   * the buffer as it is, so nothing the user typed is lost).
   */
  private async stopped(job: Job, byUser: boolean): Promise<void> {
    const editor = job.editor;
    this.stream.clear(editor);
    if (job.preview) {
      this.preview.clear();
      return;
    }
    await Promise.resolve(job.applying).catch(() => undefined);
    const keep = vscode.workspace.getConfiguration('copyspec').get<boolean>('cancelKeepsPartial', false);
    const { original, region, lastText } = job;
    if (!byUser || keep || original === undefined || !region || lastText === undefined) return;
    if (editor.document.getText(region) !== lastText) return; // changed since: leave it alone
    // One undo step with the stream, unless something else changed the document since.
    const join = job.version !== undefined && editor.document.version === job.version;
    await editor.edit((b) => b.replace(region, original), { undoStopBefore: !join, undoStopAfter: true });
  }

  /**
   * A finished stream that someone else's change split (typing above the region while it
   * streamed) is several undo steps, and one undo would leave the region half-streamed. VS
   * Code cannot merge undo steps, so the original goes back and the answer in again, each as
   * its own step: one undo then restores the original, with the typing kept.
   */
  private async oneUndoStep(job: Job): Promise<void> {
    const { editor, original, region, lastText } = job;
    if (!job.split || original === undefined || !region || lastText === undefined) return;
    const document = editor.document;
    if (document.getText(region) !== lastText) return;
    const start = document.offsetAt(region.start);
    if (!await editor.edit((b) => b.replace(region, original), { undoStopBefore: true, undoStopAfter: true })) return;
    const restored = new vscode.Range(region.start, document.positionAt(start + original.length));
    if (document.getText(restored) !== original) return; // changed in between: leave it as it is
    await editor.edit((b) => b.replace(restored, lastText), { undoStopBefore: true, undoStopAfter: true });
  }

  private onChunk(p: Chunk): void {
    const job = this.jobs.get(p.uri);
    if (!job || job.cts.token.isCancellationRequested) return;
    const figures = formatStats(p.stats);
    job.progress?.report({ message: figures });
    this.setBusy(job, figures);
    // Each turn of a fix numbers its chunks afresh.
    if (p.seq === 1) job.chunks = new ChunkText();
    let text: string;
    try {
      text = job.chunks.apply(p);
    } catch (error) {
      this.log.appendLine(`${job.verb}: ${(error as Error).message}`);
      return;
    }
    if (job.preview) {
      job.text = text;
      const r = job.requested;
      const lines = new vscode.Range(r.start.line, 0, Math.max(r.start.line, r.end.line), 0);
      this.preview.show(job.editor, { uri: job.uri, range: lines, text }, job.editor.document.languageId);
    }
  }

  private async applyEdit(p: ApplyEditParams): Promise<ApplyEditResult> {
    const target = singleDocumentEdit(p.edit);
    const job = target && this.jobs.get(target.uri);
    if (!target || !job || job.preview) return this.applyPlain(p.edit); // e.g. a code action's command
    // Each applyEdit of a job has its announcement, sent just before it: take it even when the
    // edit is refused, or every later edit would be matched with the wrong one.
    const announced = job.pending.shift();
    // Edits already in flight when the user cancelled must not land.
    if (job.cts.token.isCancellationRequested) return { applied: false, failureReason: 'cancelled by the user' };
    const editor = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === job.uri);
    if (!editor) return { applied: false, failureReason: 'the document is no longer shown in an editor' };
    const document = editor.document;
    // An edit computed before the server saw the user's latest change would land in the wrong
    // place or overwrite it: refuse it, untouched; the server computes it again.
    const stale = staleReason(target.version, document.version);
    if (stale) {
      this.log.appendLine(`${job.verb}: refused a stale edit (${stale}); the server computes it again`);
      return { applied: false, failureReason: stale };
    }
    const before = announced?.before && document.getText(toVs(announced.before));
    if (job.original === undefined) job.original = before;
    // Join the previous chunk's undo step unless something else changed the document since.
    const join = job.version !== undefined && document.version === job.version;
    if (job.version !== undefined && !join) job.split = true;
    const base = document.version;
    const editing: Editing = { base, after: announced?.after && toVs(announced.after), seen: [] };
    job.editing = editing;
    const applying = editor.edit((b) => {
      for (const e of target.edits) b.replace(toVs(e.range), e.newText);
    }, { undoStopBefore: !join, undoStopAfter: false });
    job.applying = applying;
    let ok = false;
    let pending = announced?.range ? toVs(announced.range) : undefined;
    try {
      ok = await applying;
    } finally {
      job.editing = undefined;
      // The region follows every change that was not this edit; this edit puts it at `after`.
      const mine = ok ? editing.seen.find((c) => c.version === base + 1) : undefined;
      if (mine) {
        job.version = base + 1;
        job.region = editing.after;
        job.lastText = editing.text;
      } else if (ok) { // applied, but it changed nothing: the region reads as before it
        job.version = base;
        job.region = editing.after;
        job.lastText = before;
      }
      for (const c of editing.seen) {
        if (c === mine) continue;
        job.region = followed(job.region, c.changes);
        pending = followed(pending, c.changes);
      }
    }
    // VS Code refuses an edit when the document changed between the check above and the edit.
    if (!ok) {
      this.log.appendLine(`${job.verb}: refused a stale edit (VS Code rejected it: the document changed first, or its editor closed)`);
      return { applied: false, failureReason: 'the editor rejected the edit (the document changed first, or its editor closed)' };
    }
    this.showStreamed(editor, job.region, pending);
    return { applied: true };
  }

  /** Streamed lines from the region's first line down to the pending ones (or to its end). */
  private showStreamed(editor: vscode.TextEditor, region: vscode.Range | undefined, pending: vscode.Range | undefined): void {
    if (!region) {
      this.stream.clear(editor);
      return;
    }
    const first = region.start.line;
    const last = pending ? Math.max(first, pending.start.line - 1) : region.end.line;
    this.stream.show(editor, new vscode.Range(first, 0, last, 0), pending);
  }

  /** Any other edit, in either form, the way vscode-languageclient applies one: a versioned
   * TextDocumentEdit for an open document at another version refuses the whole edit. */
  private async applyPlain(lsp: WorkspaceEdit): Promise<ApplyEditResult> {
    const edit = new vscode.WorkspaceEdit();
    const replace = (uri: string, edits: TextEdit[]) => {
      for (const e of edits) edit.replace(vscode.Uri.parse(uri), toVs(e.range), e.newText);
    };
    if (lsp.documentChanges) {
      const open = new Map(vscode.workspace.textDocuments.map((d) => [d.uri.toString(), d]));
      for (const change of lsp.documentChanges) {
        if (!('kind' in change)) {
          const document = open.get(change.textDocument.uri);
          const stale = document && staleReason(change.textDocument.version, document.version);
          if (stale) return { applied: false, failureReason: stale };
          replace(change.textDocument.uri, change.edits);
        } else if (change.kind === 'create' && change.uri) {
          edit.createFile(vscode.Uri.parse(change.uri), change.options);
        } else if (change.kind === 'rename' && change.oldUri && change.newUri) {
          edit.renameFile(vscode.Uri.parse(change.oldUri), vscode.Uri.parse(change.newUri), change.options);
        } else if (change.kind === 'delete' && change.uri) {
          edit.deleteFile(vscode.Uri.parse(change.uri), change.options);
        } else {
          return { applied: false, failureReason: `unsupported document change ${JSON.stringify(change)}` };
        }
      }
    } else {
      for (const [uri, edits] of Object.entries(lsp.changes ?? {})) replace(uri, edits);
    }
    return { applied: await vscode.workspace.applyEdit(edit) };
  }
}

/** `region` moved by `changes` around it; undefined once one touches it (or it was unknown). */
function followed(region: vscode.Range | undefined, changes: Change[]): vscode.Range | undefined {
  let range: Range | undefined = region && toLsp(region);
  for (const c of changes) range = range && trackRange(range, c);
  return range && toVs(range);
}

function toLsp(r: vscode.Range): Range;
function toLsp(p: vscode.Position): { line: number; character: number };
function toLsp(x: vscode.Range | vscode.Position): any {
  return 'start' in x
    ? { start: toLsp(x.start), end: toLsp(x.end) }
    : { line: x.line, character: x.character };
}

function toVs(r: Range): vscode.Range {
  return new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character);
}

function toLspDiagnostic(d: vscode.Diagnostic): Record<string, unknown> {
  const code = typeof d.code === 'object' ? d.code.value : d.code;
  return {
    range: toLsp(d.range), message: d.message, severity: d.severity + 1, // vscode 0-based, LSP 1-based
    ...(d.source ? { source: d.source } : {}), ...(code !== undefined ? { code } : {}),
  };
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
