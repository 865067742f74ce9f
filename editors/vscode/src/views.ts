// What the user sees of a running or finished answer, besides the text itself:
// - the streaming diff: the streamed text marked as new, the original's pending rest below it
//   dimmed (the server says where it is with `copyspec/pending`);
// - the streaming preview (copyspec.applyMode "preview"): the lines that would go in red, the
//   answer so far in green in an inline zone below them. Nothing of a preview is in the buffer;
//   once complete, its hunks are reviewed (review.ts).
import * as vscode from 'vscode';

export class StreamView implements vscode.Disposable {
  private readonly streamed = vscode.window.createTextEditorDecorationType({
    isWholeLine: true,
    backgroundColor: new vscode.ThemeColor('diffEditor.insertedLineBackground'),
  });
  private readonly pending = vscode.window.createTextEditorDecorationType({
    isWholeLine: true,
    opacity: '0.45',
    backgroundColor: new vscode.ThemeColor('diffEditor.removedLineBackground'),
  });

  /** Marks [start, pendingStart) as streamed and `pending` (if any) as not yet rewritten. */
  show(editor: vscode.TextEditor, streamed: vscode.Range | undefined, pending: vscode.Range | undefined): void {
    editor.setDecorations(this.streamed, streamed ? [streamed] : []);
    editor.setDecorations(this.pending, pending ? [pending] : []);
  }

  clear(editor: vscode.TextEditor): void {
    this.show(editor, undefined, undefined);
  }

  dispose(): void {
    this.streamed.dispose();
    this.pending.dispose();
  }
}

export interface PreviewState {
  uri: string;
  /** The lines the answer would replace (the request's, widened to whole lines). */
  range: vscode.Range;
  /** The answer so far. */
  text: string;
}

/** A streaming preview: nothing of it is in the buffer. Once the answer is complete, its hunks
 * are offered for review (Review) and this goes. */
export class PreviewView implements vscode.Disposable, vscode.CodeLensProvider {
  private readonly removed = vscode.window.createTextEditorDecorationType({
    isWholeLine: true,
    backgroundColor: new vscode.ThemeColor('diffEditor.removedLineBackground'),
  });
  private readonly comments = vscode.comments.createCommentController('copyspec.preview', 'CopySpec preview');
  private readonly lensesChanged = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.lensesChanged.event;
  private thread?: vscode.CommentThread;
  private state?: PreviewState;
  private readonly registration: vscode.Disposable;

  constructor() {
    this.registration = vscode.languages.registerCodeLensProvider({ scheme: '*' }, this);
  }

  show(editor: vscode.TextEditor, state: PreviewState, languageId: string): void {
    this.state = state;
    editor.setDecorations(this.removed, [state.range]);
    const fence = '`'.repeat(Math.max(3, ...[...state.text.matchAll(/`+/g)].map((m) => m[0].length + 1)));
    const body = new vscode.MarkdownString(`${fence}${languageId}\n${state.text}\n${fence}`);
    const comment: vscode.Comment = { body, mode: vscode.CommentMode.Preview, author: { name: 'CopySpec: streaming…' } };
    const at = new vscode.Range(state.range.end.line, 0, state.range.end.line, 0);
    if (!this.thread || this.thread.uri.toString() !== state.uri) {
      this.thread?.dispose();
      this.thread = this.comments.createCommentThread(editor.document.uri, at, [comment]);
      this.thread.canReply = false;
      this.thread.label = 'CopySpec preview';
    } else {
      this.thread.range = at;
      this.thread.comments = [comment];
    }
    this.thread.collapsibleState = vscode.CommentThreadCollapsibleState.Expanded;
    this.lensesChanged.fire();
  }

  clear(): void {
    for (const editor of vscode.window.visibleTextEditors) editor.setDecorations(this.removed, []);
    this.thread?.dispose();
    this.thread = undefined;
    this.state = undefined;
    this.lensesChanged.fire();
  }

  provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
    const state = this.state;
    if (!state || document.uri.toString() !== state.uri) return [];
    const at = new vscode.Range(state.range.start, state.range.start);
    return [new vscode.CodeLens(at, { title: 'CopySpec: previewing… Cancel (Escape)', command: 'copyspec.ui.cancel' })];
  }

  dispose(): void {
    this.clear();
    this.registration.dispose();
    this.removed.dispose();
    this.comments.dispose();
    this.lensesChanged.dispose();
  }
}
