// The extension's commands. The language client is passed in as `Rpc`, which both
// vscode-languageclient's LanguageClient and a vscode-jsonrpc MessageConnection satisfy, so the
// protocol test drives this same code against the real server.
//
// Proposals are shown as a live diff preview and applied on Accept as ONE edit (one undo step).
// The server is asked for apply "none": it never touches the buffer, so a stream can't fight the
// user's typing and the linters don't re-run on every chunk.
import * as vscode from 'vscode';
import {
  Change, Range, SessionStore, Stats, Status, endOf, formatStats, formatStatus, statusBarText, trackRange,
} from './logic';

export interface Rpc {
  sendRequest<R>(method: string, params: unknown, token?: vscode.CancellationToken): Promise<R>;
  onNotification(method: string, handler: (params: any) => void): vscode.Disposable;
}

interface Chunk { session: string; uri: string; delta: string; text: string; stats: Stats }
interface JobResult { session: string; text: string; range: Range; stats: Stats; turns?: { check: { ok: boolean } }[]; ok?: boolean }

interface Job {
  uri: string;
  session?: string;
  cts: vscode.CancellationTokenSource;
  preview: Preview;
  progress?: vscode.Progress<{ message?: string }>;
}

/** Proposal waiting for Accept/Reject; `range` follows the document as it changes. */
interface Pending { uri: string; session: string; range?: Range; original: string; text: string; preview: Preview }

export const PREVIEW_SCHEME = 'copyspec-preview';

/** Two read-only virtual documents (region before, proposal so far) shown in a diff editor. */
class Preview {
  private static next = 0;
  readonly left: vscode.Uri;
  readonly right: vscode.Uri;

  constructor(private readonly docs: PreviewDocs, uri: string, original: string) {
    const name = uri.split('/').pop() || 'untitled';
    const id = Preview.next++;
    this.left = vscode.Uri.parse(`${PREVIEW_SCHEME}:/${id}/original/${name}`);
    this.right = vscode.Uri.parse(`${PREVIEW_SCHEME}:/${id}/proposed/${name}`);
    docs.set(this.left, original);
    docs.set(this.right, '');
  }

  show(title: string): Thenable<unknown> {
    return vscode.commands.executeCommand('vscode.diff', this.left, this.right, title,
      { preview: true, preserveFocus: true, viewColumn: vscode.ViewColumn.Beside });
  }

  setOriginal(text: string): void { this.docs.set(this.left, text); }
  setProposal(text: string): void { this.docs.set(this.right, text); }

  close(): void {
    const right = this.right.toString();
    const tabs = vscode.window.tabGroups.all.flatMap((g) => g.tabs).filter((t) =>
      t.input instanceof vscode.TabInputTextDiff && t.input.modified.toString() === right);
    void vscode.window.tabGroups.close(tabs);
    this.docs.delete(this.left);
    this.docs.delete(this.right);
  }
}

export class PreviewDocs implements vscode.TextDocumentContentProvider {
  private readonly texts = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(uri: vscode.Uri): string { return this.texts.get(uri.toString()) ?? ''; }
  set(uri: vscode.Uri, text: string): void { this.texts.set(uri.toString(), text); this.changed.fire(uri); }
  delete(uri: vscode.Uri): void { this.texts.delete(uri.toString()); }
}

export class Controller implements vscode.Disposable {
  readonly docs = new PreviewDocs();
  readonly sessions = new SessionStore();
  private readonly jobs = new Map<string, Job>();
  private readonly pending = new Map<string, Pending>();
  private readonly disposables: vscode.Disposable[] = [];

  constructor(private readonly rpc: Rpc, private readonly statusBar: vscode.StatusBarItem,
              private readonly log: vscode.OutputChannel) {
    this.disposables.push(
      rpc.onNotification('copyspec/chunk', (p: Chunk) => this.onChunk(p)),
      vscode.workspace.onDidChangeTextDocument((e) => this.onChange(e.document.uri.toString(), e.contentChanges)),
    );
  }

  dispose(): void {
    for (const job of this.jobs.values()) job.cts.cancel();
    this.disposables.forEach((d) => d.dispose());
  }

  async refineSelection(): Promise<void> {
    const editor = this.editor();
    if (!editor) return;
    const instruction = await vscode.window.showInputBox({
      prompt: 'CopySpec: how should the selection change?', placeHolder: 'e.g. add type hints' });
    if (!instruction) return;
    await this.run(editor, 'copyspec/refine', toLsp(editor.selection), { instruction });
  }

  async followUp(): Promise<void> {
    const editor = this.editor();
    if (!editor) return;
    const uri = editor.document.uri.toString();
    const last = this.sessions.get(uri, editor.selection.active);
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

  cancel(): void {
    const uri = vscode.window.activeTextEditor?.document.uri.toString();
    const targets = [...this.jobs.values()].filter((j) => !uri || j.uri === uri || this.jobs.size === 1);
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

  /** Applies the pending proposal of the active document (or the only one) as one edit. */
  async accept(uri = this.pendingUri()): Promise<boolean> {
    const p = uri === undefined ? undefined : this.pending.get(uri);
    if (!p) return false;
    this.finish(p);
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === p.uri);
    if (!p.range || !doc || doc.getText(toVs(p.range)) !== p.original) {
      void vscode.window.showWarningMessage('CopySpec: the region changed since the proposal; not applied.');
      return false;
    }
    const edit = new vscode.WorkspaceEdit();
    edit.replace(doc.uri, toVs(p.range), p.text);
    if (!(await vscode.workspace.applyEdit(edit))) return false;
    this.sessions.set(p.uri, p.session, { start: p.range.start, end: endOf(p.range.start, p.text) });
    return true;
  }

  reject(uri = this.pendingUri()): void {
    const p = uri === undefined ? undefined : this.pending.get(uri);
    if (p) this.finish(p);
  }

  private finish(p: Pending): void {
    this.pending.delete(p.uri);
    p.preview.close();
    // The session still holds the turn; a follow-up continues from the region as it stands.
    if (p.range) this.sessions.set(p.uri, p.session, p.range);
  }

  private pendingUri(): string | undefined {
    const active = vscode.window.activeTextEditor?.document.uri.toString();
    if (active && this.pending.has(active)) return active;
    return this.pending.size === 1 ? [...this.pending.keys()][0] : undefined;
  }

  private editor(): vscode.TextEditor | undefined {
    const editor = vscode.window.activeTextEditor;
    if (!editor) void vscode.window.showErrorMessage('CopySpec: open a file first.');
    return editor;
  }

  private async run(editor: vscode.TextEditor, method: string, range: Range, extra: Record<string, unknown>): Promise<void> {
    const uri = editor.document.uri.toString();
    this.jobs.get(uri)?.cts.cancel(); // the server also cancels an older job on the same region
    this.reject(uri);
    const job: Job = {
      uri, session: extra.session as string | undefined, cts: new vscode.CancellationTokenSource(),
      preview: new Preview(this.docs, uri, editor.document.getText(toVs(range))),
    };
    this.jobs.set(uri, job);
    void job.preview.show(`CopySpec: ${method === 'copyspec/fix' ? 'fix' : 'refine'} (proposal)`);
    const title = method === 'copyspec/fix' ? 'CopySpec: fixing' : 'CopySpec: refining';
    let result: JobResult | undefined;
    try {
      result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title, cancellable: true },
        (progress, token) => {
          job.progress = progress;
          token.onCancellationRequested(() => job.cts.cancel());
          const params = { textDocument: { uri }, range, apply: 'none', ...extra };
          return this.rpc.sendRequest<JobResult>(method, params, job.cts.token);
        });
    } catch (e) {
      job.preview.close();
      if (job.cts.token.isCancellationRequested) vscode.window.setStatusBarMessage('CopySpec: cancelled', 3000);
      else void vscode.window.showErrorMessage(`CopySpec: ${message(e)}`);
      return;
    } finally {
      if (this.jobs.get(uri) === job) this.jobs.delete(uri);
    }
    if (result.stats?.cancelled) {
      job.preview.close();
      return;
    }
    await this.propose(editor.document, job, result, method === 'copyspec/fix');
  }

  private async propose(doc: vscode.TextDocument, job: Job, result: JobResult, isFix: boolean): Promise<void> {
    const original = doc.getText(toVs(result.range));
    job.preview.setOriginal(original);
    job.preview.setProposal(result.text);
    const p: Pending = { uri: job.uri, session: result.session, range: result.range, original, text: result.text, preview: job.preview };
    this.pending.set(job.uri, p);
    this.log.appendLine(`${isFix ? 'fix' : 'refine'} ${result.session}: ${formatStats(result.stats)}`);
    const verdict = isFix && result.ok === false
      ? `check still fails after ${result.turns?.length ?? 0} turns`
      : formatStats(result.stats);
    const choice = await vscode.window.showInformationMessage(`CopySpec proposal (${verdict})`, 'Accept', 'Reject');
    // Dismissing the message leaves the proposal pending for the Accept/Reject commands.
    if (this.pending.get(job.uri) !== p) return;
    if (choice === 'Accept') await this.accept(job.uri);
    else if (choice === 'Reject') this.reject(job.uri);
  }

  private onChunk(p: Chunk): void {
    const job = this.jobs.get(p.uri);
    if (!job || job.cts.token.isCancellationRequested || (job.session && job.session !== p.session)) return;
    job.session = p.session;
    job.preview.setProposal(p.text);
    job.progress?.report({ message: formatStats(p.stats) });
  }

  private onChange(uri: string, changes: readonly vscode.TextDocumentContentChangeEvent[]): void {
    const lsp: Change[] = changes.map((c) => ({ range: toLsp(c.range), text: c.text }));
    this.sessions.change(uri, lsp);
    const p = this.pending.get(uri);
    if (p) for (const c of lsp) p.range = p.range && trackRange(p.range, c);
  }
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
