// Hunk-by-hunk review of a finished answer, in the editor itself. The server sends the hunks
// with the result (copyspec_lsp/flow/hunks.py); the document holds one side of each hunk and the
// other side is shown beside its rows:
// - a streamed answer is in the buffer: its lines are marked as added (green) and the original
//   lines they replaced are shown struck through in red after them; Reject puts a hunk's
//   original lines back, Accept keeps it as it is;
// - a preview (copyspec.applyMode "preview") leaves the original in the buffer: its lines are
//   marked as removed (red) and the answer's are shown in green after them; Accept puts a
//   hunk's new lines in, Reject leaves it.
// Each action that changes the buffer is one edit, so one undo step. The hunks follow the
// user's typing around them by row; one whose rows the user edits leaves the review as it is.
import * as vscode from 'vscode';
import { Change, Range } from './logic';
import { ReviewHunk, WireHunk, besideText, changedRows, currentHunk, nextHunk, otherBesideRows, reviewHunks, rowsEdit, trackRows } from './hunks';

interface DocumentReview { uri: string; answerShown: boolean; hunks: ReviewHunk[] }

export class Review implements vscode.Disposable, vscode.CodeLensProvider {
  private readonly reviews = new Map<string, DocumentReview>();
  /** The document whose review is editing it now: its changes are the review's own. */
  private editing?: string;
  private readonly added = vscode.window.createTextEditorDecorationType({
    isWholeLine: true,
    backgroundColor: new vscode.ThemeColor('diffEditor.insertedLineBackground'),
    overviewRulerColor: new vscode.ThemeColor('editorOverviewRuler.addedForeground'),
    overviewRulerLane: vscode.OverviewRulerLane.Left,
  });
  private readonly removed = vscode.window.createTextEditorDecorationType({
    isWholeLine: true,
    backgroundColor: new vscode.ThemeColor('diffEditor.removedLineBackground'),
    overviewRulerColor: new vscode.ThemeColor('editorOverviewRuler.deletedForeground'),
    overviewRulerLane: vscode.OverviewRulerLane.Left,
  });
  /** The original's lines beside a streamed answer's rows. */
  private readonly removedBeside = vscode.window.createTextEditorDecorationType({
    after: { color: new vscode.ThemeColor('gitDecoration.deletedResourceForeground'), textDecoration: 'line-through', margin: '0 0 0 3em' },
  });
  /** The answer's lines beside a preview's original rows. */
  private readonly addedBeside = vscode.window.createTextEditorDecorationType({
    after: { color: new vscode.ThemeColor('gitDecoration.addedResourceForeground'), margin: '0 0 0 3em' },
  });
  private readonly lensesChanged = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.lensesChanged.event;
  private readonly disposables: vscode.Disposable[];

  constructor() {
    this.disposables = [
      vscode.languages.registerCodeLensProvider({ scheme: '*' }, this),
      vscode.window.onDidChangeVisibleTextEditors(() => this.render()),
      vscode.workspace.onDidCloseTextDocument((d) => this.end(d.uri.toString())),
      this.added, this.removed, this.removedBeside, this.addedBeside, this.lensesChanged,
    ];
  }

  dispose(): void {
    this.reviews.clear();
    this.disposables.forEach((d) => d.dispose());
  }

  /** The hunks of `uri` under review now, in order (for tests and status). */
  hunks(uri: string): readonly ReviewHunk[] {
    return this.reviews.get(uri)?.hunks ?? [];
  }

  /** Whether the review is editing `uri` now (its changes are not the user's). */
  isEditing(uri: string): boolean {
    return this.editing === uri;
  }

  /**
   * Offers the result's hunks for review in `document`, which shows the answer
   * (`answerShown`) or the original, `shift` rows below where the result says. A hunk whose
   * rows do not read what the result says is left out: it is never swapped.
   */
  start(document: vscode.TextDocument, hunks: readonly WireHunk[], answerShown: boolean, shift = 0): void {
    const uri = document.uri.toString();
    const matching = reviewHunks(hunks, answerShown, shift).filter((h) => reads(document, h));
    this.reviews.delete(uri);
    if (matching.length) this.reviews.set(uri, { uri, answerShown, hunks: matching });
    this.render();
  }

  /** Leaves the review of `uri`: the buffer stays as it is. */
  end(uri: string): void {
    if (this.reviews.delete(uri)) this.render();
  }

  /** Follows the hunks through a change of the document; a hunk the change touches leaves. */
  change(uri: string, changes: readonly Change[]): void {
    const review = this.reviews.get(uri);
    if (!review) return;
    for (const change of changes) {
      const [first, lastOld, lastNew] = changedRows(change);
      review.hunks = review.hunks.flatMap((h) => {
        const rows = trackRows(h, first, lastOld, lastNew);
        return rows ? [{ ...h, ...rows }] : [];
      });
    }
    if (!review.hunks.length) this.reviews.delete(uri);
    this.render();
  }

  /** Accept: keeps a streamed hunk, puts a previewed hunk's new lines in. */
  accept(editor: vscode.TextEditor | undefined, id?: number): Promise<void> {
    return this.act(editor, id, true);
  }

  /** Reject: puts a streamed hunk's original lines back, drops a previewed hunk. */
  reject(editor: vscode.TextEditor | undefined, id?: number): Promise<void> {
    return this.act(editor, id, false);
  }

  acceptAll(editor: vscode.TextEditor | undefined): Promise<void> {
    return this.actAll(editor, true);
  }

  rejectAll(editor: vscode.TextEditor | undefined): Promise<void> {
    return this.actAll(editor, false);
  }

  /** Moves the cursor to the next (or previous) hunk and shows it. */
  move(editor: vscode.TextEditor | undefined, forward: boolean): void {
    const review = editor && this.reviewOf(editor);
    if (!editor || !review) return;
    const hunk = nextHunk(review.hunks, editor.selection.active.line, forward);
    if (!hunk) return;
    const at = new vscode.Position(Math.min(hunk.start, editor.document.lineCount - 1), 0);
    editor.selection = new vscode.Selection(at, at);
    editor.revealRange(new vscode.Range(at, at), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  }

  provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
    const review = this.reviews.get(document.uri.toString());
    if (!review) return [];
    const uri = review.uri;
    return review.hunks.flatMap((h, i) => {
      const line = Math.min(h.start, document.lineCount - 1);
      const at = new vscode.Range(line, 0, line, 0);
      const lenses = [
        new vscode.CodeLens(at, { title: '$(check) Accept', command: 'copyspec.ui.acceptHunk', arguments: [uri, h.id] }),
        new vscode.CodeLens(at, { title: '$(close) Reject', command: 'copyspec.ui.rejectHunk', arguments: [uri, h.id] }),
      ];
      if (i === 0 && review.hunks.length > 1) {
        lenses.push(
          new vscode.CodeLens(at, { title: `Accept all ${review.hunks.length}`, command: 'copyspec.ui.acceptAll' }),
          new vscode.CodeLens(at, { title: 'Reject all', command: 'copyspec.ui.rejectAll' }));
      }
      return lenses;
    });
  }

  private reviewOf(editor: vscode.TextEditor): DocumentReview | undefined {
    const review = this.reviews.get(editor.document.uri.toString());
    if (!review) void vscode.window.showInformationMessage('CopySpec: no hunks to review in this file.');
    return review;
  }

  /** One hunk (by id, or the one at the cursor): the action swaps it or keeps it. */
  private async act(editor: vscode.TextEditor | undefined, id: number | undefined, accepting: boolean): Promise<void> {
    const review = editor && this.reviewOf(editor);
    if (!editor || !review) return;
    const hunk = id === undefined
      ? currentHunk(review.hunks, editor.selection.active.line)
      : review.hunks.find((h) => h.id === id);
    if (!hunk) return;
    await this.resolve(editor, review, [hunk], accepting !== review.answerShown);
  }

  private async actAll(editor: vscode.TextEditor | undefined, accepting: boolean): Promise<void> {
    const review = editor && this.reviewOf(editor);
    if (!editor || !review) return;
    await this.resolve(editor, review, [...review.hunks], accepting !== review.answerShown);
  }

  /** Takes `hunks` out of the review, swapping them in one edit (one undo step) if `swap`. */
  private async resolve(editor: vscode.TextEditor, review: DocumentReview, hunks: ReviewHunk[], swap: boolean): Promise<void> {
    const document = editor.document;
    const unchanged = hunks.filter((h) => reads(document, h));
    review.hunks = review.hunks.filter((h) => !hunks.includes(h));
    if (!review.hunks.length) this.reviews.delete(review.uri);
    if (swap && unchanged.length) {
      const eol = document.eol === vscode.EndOfLine.CRLF ? '\r\n' : '\n';
      const edits = unchanged.map((h) => rowsEdit(h.start, h.end, h.other, document.lineCount,
        (row) => document.lineAt(row).text.length, eol));
      this.editing = review.uri;
      let ok = false;
      try {
        ok = await editor.edit((b) => edits.forEach((e) => b.replace(toVs(e.range), e.text)),
          { undoStopBefore: true, undoStopAfter: true });
      } finally {
        this.editing = undefined;
      }
      if (!ok) void vscode.window.showErrorMessage('CopySpec: the editor refused the edit; the hunk is left as it is.');
    }
    if (unchanged.length < hunks.length) {
      void vscode.window.showWarningMessage('CopySpec: a hunk was edited since; it is left as it is.');
    }
    this.render();
  }

  private render(): void {
    for (const editor of vscode.window.visibleTextEditors) {
      const review = this.reviews.get(editor.document.uri.toString());
      const hunks = review?.hunks ?? [];
      const last = editor.document.lineCount - 1;
      const tabSize = typeof editor.options?.tabSize === 'number' ? editor.options.tabSize : 4;
      const rows = hunks.flatMap((h) => Array.from({ length: h.end - h.start }, (_, t) => h.start + t));
      const lines = rows.filter((r) => r <= last).map((r) => new vscode.Range(r, 0, r, 0));
      const beside = hunks.flatMap((h) => otherBesideRows(h).filter((b) => b.row <= last).map((b) => ({
        range: editor.document.lineAt(b.row).range, // `after` goes after the row's text
        hoverMessage: hover(h, review?.answerShown ?? true),
        renderOptions: { after: { contentText: (review?.answerShown ? '− ' : '+ ') + besideText(b.lines, tabSize) } },
      })));
      const answerShown = review?.answerShown ?? true;
      editor.setDecorations(this.added, answerShown ? lines : []);
      editor.setDecorations(this.removed, answerShown ? [] : lines);
      editor.setDecorations(this.removedBeside, answerShown ? beside : []);
      editor.setDecorations(this.addedBeside, answerShown ? [] : beside);
    }
    void vscode.commands.executeCommand('setContext', 'copyspec.reviewing', this.reviews.size > 0);
    this.lensesChanged.fire();
  }
}

/** Whether the document's rows of `hunk` read its shown lines. */
function reads(document: vscode.TextDocument, hunk: ReviewHunk): boolean {
  if (hunk.end > document.lineCount) return false;
  return hunk.shown.every((line, t) => document.lineAt(hunk.start + t).text === line);
}

/** The hunk as a unified diff, for the hover on its rows. */
function hover(hunk: ReviewHunk, answerShown: boolean): vscode.MarkdownString {
  const [old, neu] = answerShown ? [hunk.other, hunk.shown] : [hunk.shown, hunk.other];
  const body = [...old.map((l) => '-' + l), ...neu.map((l) => '+' + l)].join('\n');
  const fence = '`'.repeat(Math.max(3, ...[...body.matchAll(/`+/g)].map((m) => m[0].length + 1)));
  return new vscode.MarkdownString(`CopySpec hunk\n\n${fence}diff\n${body}\n${fence}`);
}

function toVs(r: Range): vscode.Range {
  return new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character);
}
