// Pure logic of the extension: no `vscode` import, so `node --test` can load it directly.
// Positions are LSP-shaped and counted in UTF-16 code units, which is both the LSP default
// encoding and how JavaScript strings index.

export interface Position { line: number; character: number }
export interface Range { start: Position; end: Position }
export interface Change { range: Range; text: string }

/** The parts of an LSP `WorkspaceEdit` the server can send (resource operations carry `kind`). */
export interface TextEdit { range: Range; newText: string }
export interface TextDocumentEdit { textDocument: { uri: string; version: number | null }; edits: TextEdit[] }
export interface ResourceOperation { kind: 'create' | 'rename' | 'delete'; uri?: string; oldUri?: string; newUri?: string;
  options?: { overwrite?: boolean; ignoreIfExists?: boolean; ignoreIfNotExists?: boolean; recursive?: boolean } }
export interface WorkspaceEdit {
  changes?: Record<string, TextEdit[]>;
  documentChanges?: (TextDocumentEdit | ResourceOperation)[];
}

/** An edit of one document's text: `version` is null when the edit names none (`changes`). */
export interface DocumentEdit { uri: string; version: number | null; edits: TextEdit[] }

/**
 * The edit as text edits of ONE document, or undefined when it is anything else (several
 * documents, file operations, nothing). `documentChanges` wins over `changes`, as the spec
 * says for a client that takes both.
 */
export function singleDocumentEdit(edit: WorkspaceEdit): DocumentEdit | undefined {
  if (edit.documentChanges) {
    const [only, ...more] = edit.documentChanges;
    if (!only || more.length || 'kind' in only) return undefined;
    const version = typeof only.textDocument.version === 'number' ? only.textDocument.version : null;
    return { uri: only.textDocument.uri, version, edits: only.edits };
  }
  const entries = Object.entries(edit.changes ?? {});
  return entries.length === 1 ? { uri: entries[0][0], version: null, edits: entries[0][1] } : undefined;
}

/** Why an edit stamped with `version` must not be applied to a document at `current` (spec:
 * a versioned edit is for exactly that version; null or a negative one names none). */
export function staleReason(version: number | null, current: number): string | undefined {
  if (version === null || version < 0 || version === current) return undefined;
  return `the edit is for version ${version} of the document, which is at version ${current} now`;
}

export interface Stats {
  new_tokens?: number;
  tokens_per_second?: number;
  copied_share?: number;
  forward_passes?: number;
  copied_tokens?: number;
  drafted_tokens?: number;
  cancelled?: boolean;
  [key: string]: unknown;
}

export interface Status {
  version: string;
  model: string;
  device?: string;
  dtype?: string;
  state: 'loading' | 'ready' | 'error';
  error?: string;
  queue?: number;
  sessions?: { session: string; uri: string; range: Range; turns: number }[];
  lastStats?: Stats;
}

/** Settings whose value travels to the server in `initializationOptions` (camelCase keys). */
export const SERVER_SETTINGS = [
  'model', 'device', 'dtype', 'trustRemoteCode', 'draftModel', 'threads', 'gamma', 'block',
  'maxNewTokens', 'checkCommand', 'checkTimeout', 'logLevel', 'poolUrl', 'prediction', 'costAware',
  'compile',
] as const;

/** Extension settings whose server key differs: `copyspec.server.*` already names the server
 * command, so the pool's URL is `copyspec.poolUrl` here and `server` on the wire. */
const SERVER_KEYS: Record<string, string> = { poolUrl: 'server' };

/** Switches whose `false` is the server's default too: left out like any unset value. A
 * switch on by default (costAware) travels as `false` when the user turns it off. */
const OFF_BY_DEFAULT = new Set(['trustRemoteCode']);

/** Unset settings (null, "", []) are left out so the server applies its own defaults. */
export function initializationOptions(get: (key: string) => unknown): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const key of SERVER_SETTINGS) {
    const value = get(key);
    const unset = value === undefined || value === null || value === ''
      || (Array.isArray(value) && value.length === 0);
    if (!unset && !(value === false && OFF_BY_DEFAULT.has(key))) options[SERVER_KEYS[key] ?? key] = value;
  }
  return options;
}

export function formatStats(stats: Stats | undefined): string {
  if (!stats) return '';
  const parts: string[] = [];
  if (typeof stats.tokens_per_second === 'number') parts.push(`${stats.tokens_per_second.toFixed(1)} tok/s`);
  if (typeof stats.copied_share === 'number') parts.push(`${Math.round(stats.copied_share * 100)}% copied`);
  if (typeof stats.new_tokens === 'number') parts.push(`${stats.new_tokens} tokens`);
  return parts.join(' · ');
}

export function statusBarText(status: Status | undefined): string {
  if (!status) return 'CopySpec: starting';
  const name = status.model.split(/[\\/]/).filter(Boolean).pop() ?? status.model;
  return `CopySpec: ${name} (${status.state})`;
}

export function formatStatus(status: Status): string {
  const lines = [
    `server ${status.version}`,
    `model ${status.model} on ${status.device ?? '?'} (${status.dtype ?? '?'}): ${status.state}`,
  ];
  if (status.error) lines.push(`error: ${status.error}`);
  lines.push(`queue ${status.queue ?? 0}, sessions ${status.sessions?.length ?? 0}`);
  if (status.lastStats) lines.push(`last request: ${formatStats(status.lastStats)}`);
  return lines.join('\n');
}

function before(a: Position, b: Position): boolean {
  return a.line < b.line || (a.line === b.line && a.character < b.character);
}

/** Where `text` ends when inserted at `start` (\r\n, \n and \r all break lines, as in LSP). */
export function endOf(start: Position, text: string): Position {
  const lines = text.split(/\r\n|\r|\n/);
  const last = lines[lines.length - 1].length;
  return lines.length === 1
    ? { line: start.line, character: start.character + last }
    : { line: start.line + lines.length - 1, character: last };
}

/**
 * Follows `region` through a document change. Returns undefined when the change touches the
 * region itself, so a proposal is never applied over text the user typed.
 */
export function trackRange(region: Range, change: Change): Range | undefined {
  const { start: cs, end: ce } = change.range;
  if (before(region.start, ce)) {
    // Ends after the region starts: unchanged if it starts at or after the region's end.
    return before(cs, region.end) ? undefined : region;
  }
  const newEnd = endOf(cs, change.text);
  const shift = (p: Position): Position => p.line === ce.line
    ? { line: newEnd.line, character: newEnd.character + p.character - ce.character }
    : { line: p.line + newEnd.line - ce.line, character: p.character };
  return { start: shift(region.start), end: shift(region.end) };
}

/** Follows `region` through a change, which may overlap it: the region grows or shrinks to
 * take in what the change put there. */
export function stretchRange(region: Range, change: Change): Range {
  const outside = trackRange(region, change);
  if (outside) return outside;
  const { start: cs, end: ce } = change.range;
  const newEnd = endOf(cs, change.text);
  const start = before(cs, region.start) ? cs : region.start;
  if (!before(ce, region.end)) return { start, end: newEnd };
  const end = region.end.line === ce.line
    ? { line: newEnd.line, character: newEnd.character + region.end.character - ce.character }
    : { line: region.end.line + newEnd.line - ce.line, character: region.end.character };
  return { start, end };
}

export function contains(r: Range, p: Position): boolean {
  return !before(p, r.start) && !before(r.end, p);
}

/** The last session per document, with its region kept current as the document changes. */
export class SessionStore {
  private readonly byUri = new Map<string, { session: string; range: Range }[]>();

  set(uri: string, session: string, range: Range): void {
    const list = (this.byUri.get(uri) ?? []).filter((s) => s.session !== session);
    list.push({ session, range });
    this.byUri.set(uri, list);
  }

  /** The session whose region holds `at`, else the most recent one in the document. */
  get(uri: string, at?: Position): { session: string; range: Range } | undefined {
    const list = this.byUri.get(uri) ?? [];
    const hit = at && [...list].reverse().find((s) => contains(s.range, at));
    return hit || list[list.length - 1];
  }

  /** A session whose region the user edited is dropped: its last answer no longer matches.
   * A change of the review's own (`own`: a hunk accepted or rejected) stretches it instead. */
  change(uri: string, changes: readonly Change[], own = false): void {
    const list = this.byUri.get(uri);
    if (!list) return;
    const follow = own ? stretchRange : trackRange;
    const kept = list.flatMap((s) => {
      let range: Range | undefined = s.range;
      for (const c of changes) range = range && follow(range, c);
      return range ? [{ session: s.session, range }] : [];
    });
    this.byUri.set(uri, kept);
  }
}

/**
 * Splits server stderr into lines to show and an unfinished tail to keep for the next call.
 * Outside debug, progress-bar redraws (carriage returns, "…%|█") and Python warnings with
 * their source line are dropped: the server reports real problems through its own log lines.
 */
export function quietStderr(data: string, debug: boolean): [string, string] {
  const parts = data.split('\n');
  const tail = parts.pop() ?? '';
  if (debug) return [parts.map((l) => l + '\n').join(''), tail];
  const shown: string[] = [];
  let skipSource = false;
  for (const line of parts) {
    if (skipSource && /^\s/.test(line)) { skipSource = false; continue; }
    skipSource = /\b\w*Warning: /.test(line);
    if (skipSource || line.includes('\r') || /\d+%\|/.test(line) || !line.trim()) continue;
    shown.push(line + '\n');
  }
  return [shown.join(''), tail];
}

/** One `copyspec/chunk`: the replacement's text from `start` on (UTF-16 code units) becomes
 * `insert`, leaving `length` units; the last chunk of a turn (`final`) also has the whole `text`. */
export interface Chunk {
  session: string; uri: string; seq: number; start: number; insert: string; length: number;
  stats: Stats; final?: boolean; text?: string;
}

/** The replacement so far, rebuilt from a turn's chunks; throws when one is missing, out of
 * order, or does not leave the length (or final text) the server says. */
export class ChunkText {
  text = '';
  private seq = 0;

  apply(chunk: Chunk): string {
    if (this.seq !== 0 && chunk.seq !== this.seq + 1) {
      throw new Error(`copyspec/chunk ${chunk.seq} after ${this.seq}: one was lost`);
    }
    this.seq = chunk.seq;
    this.text = this.text.slice(0, chunk.start) + chunk.insert;
    if (this.text.length !== chunk.length || (chunk.text !== undefined && chunk.text !== this.text)) {
      throw new Error(`copyspec/chunk ${chunk.seq} does not rebuild the server's text`);
    }
    return this.text;
  }
}
