// The extension in a real VS Code (code-server, started by run.sh), driven through headless
// Debian chromium with playwright-core, against the real copyspec-lsp and its built-in model.
// Each scenario acts as a user would (palette, Ctrl+., keys, typing) and checks what the
// editor shows and what lands on disk. Exit 0 = all passed; a failure saves a screenshot.
//
// Scenarios that act mid-stream (Escape, typing while it streams, the streaming-diff shot) close
// the server's test gate first: run.sh starts the server with COPYSPEC_TEST_GATE=$E2E_GATE, and
// while that file exists the real server holds a stream after each edit the editor is up to date
// with (copyspec_lsp/adapters/gate.py). So the stream is surely still running when they act, however fast
// the model; they open the gate once they have acted.
//
// The default model (SmolLM2-135M-Instruct with our adapter) answers for real: the scenarios that
// check an exact result (the streaming diff, the code action, typing above the region, the hunk
// review, the preview and the README's screenshots) ask for a rename it gets exactly right under
// greedy decoding, and the buffer must end as exactly that edit. Nothing is faked but the pace.
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const WS = process.env.E2E_WS;
const SHOTS = process.env.E2E_SHOTS;
const DATA = process.env.E2E_DATA;
const GATE = process.env.E2E_GATE;
const URL = process.env.E2E_URL + '?folder=' + encodeURIComponent(WS);
const FILE = path.join(WS, 'sample.py');
const SHORT = 'def count_items(items):\n    x = 0\n    x += len(items)\n    return x\n';
const LONG = 'def total(items):\n' + Array.from({ length: 12 }, (_, i) => `    x${i} = len(items) + ${i}\n`).join('')
  + '    return x0 + x1 + x2\n';
// The exact-result scenarios' file: a function whose rename changes three separate places, so
// the answer is three hunks. MEAN_ANSWER is the rename done right, every occurrence and nothing
// else: what the default model answers (greedy decoding, copyspec.threads 1).
const MEAN_HEAD = 'from dataclasses import dataclass\n\n\n@dataclass\nclass Person:\n    name: str\n    age: int\n\n\n';
const MEAN_TAIL = '\n\n\nif __name__ == "__main__":\n    print(mean_age([Person("Ada", 36), Person("Alan", 41)]))\n';
const MEAN_FIRST = MEAN_HEAD.split('\n').length - 1; // the function's first line (0-based)
const MEAN_FN = [
  'def mean_age(people):',
  '    total = 0',
  '    count = 0',
  '    for person in people:',
  '        total += person.age',
  '        count += 1',
  '    if count == 0:',
  '        return 0.0',
  '    return total / count',
];
const RENAME = 'Rename `count` to `num`.';
const MEAN_ANSWER = MEAN_FN.map((l) => l.replace(/\bcount\b/g, 'num'));
const mean = (fn) => MEAN_HEAD + fn.join('\n') + MEAN_TAIL;
const MEAN = mean(MEAN_FN);
const MEAN_LAST = MEAN_FIRST + MEAN_FN.length - 1;
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `pred` until it returns something truthy; throws after `ms` naming `what`. */
async function until(what, pred, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const editorText = (page) => page.evaluate(() => {
  const ed = document.querySelector('.editor-instance .monaco-editor .view-lines');
  return ed && [...ed.querySelectorAll('.view-line')]
    .map((l) => [parseFloat(l.style.top), l.innerText.replace(/\u00a0/g, ' ')])
    .sort((a, b) => a[0] - b[0]).map((x) => x[1]).join('\n');
});
const statusItems = (page) => page.evaluate(() => [...document.querySelectorAll('.statusbar-item')]
  .map((e) => e.innerText.trim()).filter((s) => s.includes('CopySpec')));
const toasts = (page) => page.evaluate(() => [...document.querySelectorAll('.notification-toast')]
  .map((e) => e.innerText.replace(/\s+/g, ' ').trim()).filter(Boolean));
/** The clickable code lenses whose title is exactly `title` (a codicon before it is no text). */
const lensLinks = (page, title) => page.locator('.codelens-decoration a').filter({ hasText: new RegExp(`^\\s*${title}\\s*$`) });

async function palette(page, command) {
  await page.keyboard.press('Control+Shift+P');
  const input = page.locator('.quick-input-widget .quick-input-box input');
  await input.waitFor({ state: 'visible', timeout: 15000 });
  await input.fill('>' + command);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: command }).first().waitFor({ timeout: 15000 });
  await page.keyboard.press('Enter');
}

async function answer(page, prompt, text) {
  const box = page.locator('.quick-input-widget .quick-input-box input');
  await page.locator('.quick-input-widget', { hasText: prompt }).waitFor({ state: 'visible', timeout: 15000 });
  await box.fill(text);
  await page.keyboard.press('Enter');
}

async function focusEditor(page) {
  await page.locator('.editor-instance .monaco-editor .overflow-guard').first().click({ position: { x: 300, y: 10 } });
}

/** Puts `text` on disk and into the editor (File: Revert File), cursor at the top; first
 * lets the last request's "done"/"cancelled" status message expire, so it is not mistaken
 * for the next one's outcome. */
async function load(page, text) {
  await settle(page);
  fs.writeFileSync(FILE, text);
  await focusEditor(page);
  await palette(page, 'File: Revert File');
  const first = text.split('\n')[0];
  await until('the file to reload', async () => (await editorText(page) || '').trimEnd() === text.trimEnd() || null);
  await focusEditor(page);
  await page.keyboard.press('Control+Home');
  return first;
}

/** Opens a workspace file from the Explorer: Quick Open's file search caches its list and, on
 * a loaded machine, went on answering "No matching results" for a file the Explorer showed. */
async function openFile(page, name, marker) {
  const row = page.locator('.explorer-folders-view .monaco-list-row', { hasText: name }).first();
  await row.waitFor({ state: 'visible', timeout: 60000 });
  await row.click();
  await page.locator('.editor-instance .monaco-editor .view-line', { hasText: marker }).first().waitFor({ timeout: 30000 });
}

/** For a screenshot: the cursor on the empty third row, so no selection or word highlight
 * covers the colours. */
async function restCursor(page) {
  await focusEditor(page);
  for (const k of ['Control+Home', 'ArrowDown', 'ArrowDown']) await page.keyboard.press(k);
}

async function settle(page) {
  await until('the last outcome to expire', async () => !(await statusItems(page))
    .some((s) => /CopySpec: (done|cancelled)/.test(s)) || null, 15000);
}

async function selectLines(page, from, to) {
  await page.keyboard.press('Control+Home');
  for (let i = 0; i < from; i++) await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Home');
  await page.keyboard.press('Home');
  for (let i = from; i < to; i++) await page.keyboard.press('Shift+ArrowDown');
  await page.keyboard.press('Shift+End');
}

/** Saves and reads the file back. VS Code truncates the file before it writes it, so the
 * first new mtime can come with an empty or half-written file: read only once a new, non-empty
 * size and mtime have held still for one poll. */
async function save(page) {
  const before = fs.statSync(FILE).mtimeMs;
  await page.keyboard.press('Control+S');
  let last = '';
  await until('the save', async () => {
    const stat = fs.statSync(FILE);
    const now = `${stat.mtimeMs}:${stat.size}`;
    const written = stat.mtimeMs !== before && stat.size > 0 && now === last;
    last = now;
    return written || null;
  }, 10000).catch(() => null);
  return fs.readFileSync(FILE, 'utf8');
}

/** The CopySpec outcome: the status-bar message or a toast, once nothing is running. */
async function outcome(page, ms = 180000) {
  return until('the request to end', async () => {
    const sb = (await statusItems(page)).find((s) => /CopySpec: (done|cancelled)/.test(s));
    const t = (await toasts(page)).find((x) => /CopySpec/.test(x) && !/refining|fixing/.test(x));
    const busy = (await statusItems(page)).some((s) => /CopySpec: (refining|fixing)/.test(s));
    return !busy && (sb || t);
  }, ms);
}

async function clearToasts(page) {
  await palette(page, 'Notifications: Clear All Notifications');
  await until('toasts gone', async () => (await toasts(page)).length === 0 || null, 5000).catch(() => null);
}

/** Records every distinct text of the editor from now on (a MutationObserver in the page). */
async function recordStates(page) {
  await page.evaluate(() => {
    const ed = document.querySelector('.editor-instance .monaco-editor .view-lines');
    const read = () => [...ed.querySelectorAll('.view-line')]
      .map((l) => [parseFloat(l.style.top), l.innerText.replace(/\u00a0/g, ' ')])
      .sort((a, b) => a[0] - b[0]).map((x) => x[1]).join('\n');
    window.__states = [read()];
    window.__observer?.disconnect();
    window.__observer = new MutationObserver(() => {
      const t = read();
      if (t !== window.__states[window.__states.length - 1]) window.__states.push(t);
    });
    window.__observer.observe(ed, { subtree: true, childList: true, characterData: true });
  });
}
const states = (page) => page.evaluate(() => window.__states);
/** How many streamed edits were refused as stale so far (the extension logs each to its output channel). */
function refusals() {
  const files = [];
  const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).forEach((e) => {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p); else if (/CopySpec\.log$/.test(e.name)) files.push(p);
  });
  walk(path.join(DATA, 'logs'));
  const lines = files.map((f) => fs.readFileSync(f, 'utf8')).join('\n').split('\n').filter((l) => /refused a stale edit/.test(l));
  const byVs = lines.filter((l) => /VS Code rejected/.test(l)).length;
  return `${lines.length} (${lines.length - byVs} by the version check, ${byVs} by VS Code)`;
}

/** Closes the gate: the next stream holds after its first edit (until `release`). */
const hold = () => fs.writeFileSync(GATE, '');
const release = () => fs.rmSync(GATE, { force: true });
/** Runs `fn` with the gate closed, and opens it afterwards whatever happens. */
async function held(fn) {
  hold();
  try {
    return await fn();
  } finally {
    release();
  }
}

/** Under a closed gate: lets the held stream go on a piece or so at a time (the gate opened for
 * a moment, then closed again: the stream holds after its next edit) until `pred()` holds. */
async function streamUntil(what, pred) {
  for (let i = 0; !(await pred()); i++) {
    if (i === 400) throw new Error(`the stream never showed ${what}`);
    release();
    await sleep(15);
    hold();
    await sleep(100);
  }
}

/** Whether a running copyspec_lsp was started with the gate's file (its /proc environ names it). */
function serverHasGate() {
  const wanted = [`COPYSPEC_TEST_GATE=${GATE}`];
  return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).some((pid) => {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      return cmd.includes('copyspec_lsp') && wanted.every((w) => environ.includes(w));
    } catch {
      return false; // gone, or not ours
    }
  });
}

/** Waits for the first streamed edit of a held stream: the text is no longer `before`. */
async function firstEdit(page, before) {
  return until('the first streamed edit', async () => {
    const t = await editorText(page);
    return t && t.trimEnd() !== before.trimEnd() ? t : null;
  }, 120000);
}

const scenarios = [];
const scenario = (name, fn) => scenarios.push({ name, fn });

scenario('status command', async (page) => {
  await palette(page, 'CopySpec: Show Status');
  const text = await until('the status in the output panel', () => page.evaluate(() => {
    const p = document.querySelector('.part.panel');
    const t = p && p.innerText.replace(/\u00a0/g, ' ');
    return t && /server \d/.test(t) && /: ready/.test(t) ? t : null;
  }), 15000);
  await palette(page, 'View: Toggle Panel Visibility');
  return text.split('\n').filter((l) => /^(server|model) /.test(l)).join(' | ');
});

scenario('refine from the palette: streaming diff, the exact rename, one undo', async (page) => {
  await load(page, MEAN);
  await selectLines(page, MEAN_FIRST, MEAN_LAST);
  await recordStates(page);
  const lastLine = MEAN_FN[MEAN_FN.length - 1];
  // Mid-stream, held after the first edit: new text above, the original's rest (its last line)
  // still below it, dimmed, and the progress figures in the status bar and the notification.
  const { mid, status } = await held(async () => {
    await palette(page, 'CopySpec: Refine Selection');
    await answer(page, 'how should the selection change', RENAME);
    const text = await firstEdit(page, MEAN);
    if (!text.includes(lastLine)) throw new Error('no original rest in view: ' + JSON.stringify(text));
    await until('the pending rest decorated', () => page.evaluate(() => document.querySelectorAll('.view-overlays [class*="ced-"]').length >= 2 || null), 30000);
    await until('the progress figures', async () => (await toasts(page)).some((x) => /refining.*tok\/s/.test(x)) || null, 30000);
    return { mid: text, status: (await statusItems(page)).join(' ') };
  });
  const done = await outcome(page);
  if (!/done/.test(done)) throw new Error('outcome: ' + done);
  const seen = await states(page);
  const disk = await save(page);
  const dom = await editorText(page);
  if (dom.trimEnd() !== disk.trimEnd()) throw new Error('editor and disk differ');
  if (disk !== mean(MEAN_ANSWER)) throw new Error('not exactly the rename: ' + JSON.stringify(disk));
  const withRest = seen.filter((t) => t !== seen[0] && t.includes(lastLine));
  await focusEditor(page);
  await page.keyboard.press('Control+Z');
  const undone = await save(page);
  if (undone !== MEAN) throw new Error('one undo did not restore the original: ' + JSON.stringify(undone));
  if (!/refining|tok\/s/.test(status)) throw new Error('status item did not follow the request: ' + status);
  return `${done}; ${seen.length} states, ${withRest.length} with the original's rest in view; status mid-stream "${status}"; first mid state has ${mid.split('\n').length} lines`;
});

scenario('follow-up turn', async (page) => {
  await load(page, SHORT);
  await selectLines(page, 1, 2);
  await palette(page, 'CopySpec: Refine Selection');
  await answer(page, 'how should the selection change', 'rename x to count');
  const first = await outcome(page);
  await clearToasts(page);
  await until('the done message to expire', async () => !(await statusItems(page)).some((s) => /done/.test(s)) || null, 15000);
  const afterFirst = await save(page);
  await focusEditor(page);
  await page.keyboard.press('Control+Home');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('End');
  await palette(page, 'CopySpec: Follow-up');
  await answer(page, 'follow-up', 'also add a comment');
  const second = await outcome(page);
  if (!/done/.test(first) || !/done/.test(second)) throw new Error(`turns: ${first} / ${second}`);
  const text = await save(page);
  return `turn 1: ${first}; turn 2: ${second}; changed by turn 2: ${text !== afterFirst}`;
});

scenario('refine from the code action (Ctrl+.) asks for the instruction', async (page) => {
  await load(page, MEAN);
  await selectLines(page, MEAN_FIRST, MEAN_LAST);
  const menu = page.locator('.action-widget');
  // On a loaded machine the first menu can open before the server's answer is in: ask again.
  for (let attempt = 1; ; attempt++) {
    await sleep(500);
    await page.keyboard.press(attempt % 2 ? 'Control+.' : 'Control+Shift+R'); // Quick Fix…, Refactor…
    const text = await menu.waitFor({ state: 'visible', timeout: 15000 }).then(() => menu.innerText()).catch(() => '');
    if (/refine selection/.test(text)) break;
    if (attempt === 4) throw new Error('no "refine selection" in the code action menu: ' + JSON.stringify(text));
    await page.keyboard.press('Escape');
  }
  while (!/refine selection/.test(await page.locator('.action-widget .monaco-list-row.focused').innerText().catch(() => ''))) {
    await page.keyboard.press('ArrowDown');
  }
  await page.keyboard.press('Enter');
  await answer(page, 'how should the selection change', RENAME);
  const done = await outcome(page);
  if (!/done/.test(done)) throw new Error(done);
  const text = await save(page);
  if (text !== mean(MEAN_ANSWER)) throw new Error('not exactly the rename: ' + JSON.stringify(text));
  await focusEditor(page);
  await page.keyboard.press('Control+Z');
  if (await save(page) !== MEAN) throw new Error('undo did not restore');
  return `${done}; exactly the rename, one undo restores`;
});

scenario('cancel mid-stream (Escape) restores the original', async (page) => {
  await load(page, LONG);
  await page.keyboard.press('Control+A');
  const done = await held(async () => { // held after its first edit: only the Escape stops it
    await palette(page, 'CopySpec: Refine Selection');
    await answer(page, 'how should the selection change', 'rename x0 to first');
    await firstEdit(page, LONG);
    await page.keyboard.press('Escape');
    return until('the cancel', async () => (await statusItems(page)).find((s) => /CopySpec: cancelled/.test(s)), 30000);
  });
  if (!/cancelled/.test(done)) throw new Error('outcome: ' + done);
  const text = await save(page);
  if (text !== LONG) throw new Error('not restored: ' + JSON.stringify(text));
  return `${done}; the original is back without an undo`;
});

scenario('typing inside the region while it streams stops it and keeps the typing', async (page) => {
  await load(page, LONG);
  await page.keyboard.press('Control+A');
  const done = await held(async () => { // held after its first edit: only the typing stops it
    await palette(page, 'CopySpec: Refine Selection');
    await answer(page, 'how should the selection change', 'rename x0 to first');
    await firstEdit(page, LONG);
    // Type at the end of the region's second line.
    for (const k of ['Control+Home', 'ArrowDown', 'End']) await page.keyboard.press(k);
    await page.keyboard.type(' # mine');
    return until('the stop', async () => (await toasts(page)).find((t) => /CopySpec/.test(t) && /edited|changed|apply/.test(t)), 60000);
  });
  const text = await save(page);
  if (!text.includes('# mine')) throw new Error('the typing was lost: ' + JSON.stringify(text));
  await clearToasts(page);
  return done;
});

scenario('typing above the region while it streams: the rename still lands exactly, below the typing; one undo restores the original and keeps the typing, one redo the answer', async (page) => {
  await load(page, MEAN);
  await selectLines(page, MEAN_FIRST, MEAN_LAST);
  const top = MEAN.split('\n')[0] + ' # top';
  await held(async () => { // held after its first edit while the keys go in
    await palette(page, 'CopySpec: Refine Selection');
    await answer(page, 'how should the selection change', RENAME);
    await firstEdit(page, MEAN);
    // Keys at the end of line 0, above the region, while the stream is held: the rest of it
    // is computed against the text with them. (An edit already in flight when keys arrive is
    // stale and refused, by the extension's version check or by VS Code itself, and computed
    // again; the count is reported. The protocol tests make that happen every time.)
    for (const k of ['Control+Home', 'End']) await page.keyboard.press(k);
    await page.keyboard.type(' # top');
    await until('the typing in the editor', async () => (await editorText(page) || '').startsWith(top + '\n') || null, 10000);
  });
  const done = await outcome(page);
  if (!/done/.test(done)) throw new Error('outcome: ' + done);
  const text = await save(page);
  const withTyping = (t) => top + t.slice(t.indexOf('\n'));
  if (text !== withTyping(mean(MEAN_ANSWER))) throw new Error('not the typing plus exactly the rename: ' + JSON.stringify(text));
  await focusEditor(page);
  await page.keyboard.press('Control+Z');
  const undone = await save(page);
  if (!undone.startsWith(top + '\n')) throw new Error('one undo took the typing away: ' + JSON.stringify(undone));
  // The typing split the stream's undo step; the extension rejoins it when the answer is in.
  if (undone !== withTyping(MEAN)) throw new Error('one undo did not restore the original below the typing: ' + JSON.stringify(undone));
  await focusEditor(page);
  await page.keyboard.press('Control+Shift+Z');
  const redone = await save(page);
  if (redone !== text) throw new Error('one redo did not put the answer back: ' + JSON.stringify(redone));
  return `${done}; the typing stays on line 0; one undo: the original below it; one redo: the answer; ${refusals()} stale edits refused so far`;
});

scenario('hunk review: the rename streamed in as three hunks; accept the first and third, reject the second; exact buffer, typing kept, undo', async (page) => {
  await load(page, MEAN);
  await selectLines(page, MEAN_FIRST, MEAN_LAST);
  await held(async () => { // the streaming-diff screenshot, mid-stream
    await palette(page, 'CopySpec: Refine Selection');
    await answer(page, 'how should the selection change', RENAME);
    await firstEdit(page, MEAN);
    await focusEditor(page); // a click on the first row: no selection hides the colours
    await streamUntil('half the answer with the original\'s rest pending', async () => {
      const text = await editorText(page) || '';
      return text.includes(MEAN_ANSWER.slice(0, 6).join('\n')) && text.includes(MEAN_FN[8]) || null;
    });
    await until('the pending rest decorated', () => page.evaluate(() => document.querySelectorAll('.view-overlays [class*="ced-"]').length >= 2 || null), 30000);
    await until('the progress figures', async () => (await toasts(page)).some((x) => /refining.*tok\/s/.test(x)) || null, 30000);
    await page.screenshot({ path: path.join(SHOTS, 'streaming-diff.png') });
  });
  const done = await outcome(page);
  if (!/done/.test(done)) throw new Error('outcome: ' + done);
  await until('three hunks offered', async () => (await lensLinks(page, 'Accept').count()) === 3 || null, 30000);
  if ((await save(page)) !== mean(MEAN_ANSWER)) throw new Error('not exactly the rename');
  await clearToasts(page);
  await restCursor(page);
  await page.screenshot({ path: path.join(SHOTS, 'hunk-review.png') });
  // 1. Accept the first hunk from its code lens.
  await lensLinks(page, 'Accept').first().click();
  await until('two hunks left', async () => (await lensLinks(page, 'Accept').count()) === 2 || null, 10000);
  // Typing above the region, outside every hunk: the hunks move down with it.
  await focusEditor(page);
  await page.keyboard.press('Control+Home');
  await page.keyboard.type('# reviewed');
  await page.keyboard.press('Enter');
  // 2. Reject the second by key: the next hunk from the top, then Ctrl+Alt+N.
  await page.keyboard.press('Control+Home');
  await page.keyboard.press('Alt+F5');
  await page.keyboard.press('Control+Alt+N');
  await until('one hunk left', async () => (await lensLinks(page, 'Accept').count()) === 1 || null, 10000);
  // 3. Accept the third by key: the next hunk, then Ctrl+Alt+Y.
  await page.keyboard.press('Alt+F5');
  await page.keyboard.press('Control+Alt+Y');
  await until('no hunk left', async () => (await lensLinks(page, 'Accept').count()) === 0 || null, 10000);
  // The hunks: the function's line 2, lines 5-6, line 8; the second stays as it was.
  const chosen = [...MEAN_ANSWER.slice(0, 5), ...MEAN_FN.slice(5, 7), ...MEAN_ANSWER.slice(7)];
  const text = await save(page);
  if (text !== '# reviewed\n' + mean(chosen)) throw new Error('not the chosen hunks: ' + JSON.stringify(text));
  await focusEditor(page);
  await page.keyboard.press('Control+Z');
  const undone = await save(page);
  if (undone !== '# reviewed\n' + mean(MEAN_ANSWER)) throw new Error('one undo did not take back exactly the reject: ' + JSON.stringify(undone));
  return 'accepted 1 and 3, rejected 2: exact; the typing kept; one undo took back the reject';
});

scenario('preview mode: the hunks reviewed against the original; nothing changes until Accept all; Reject all leaves it', async (page) => {
  await load(page, MEAN);
  await palette(page, 'CopySpec: Toggle Preview Mode');
  await until('preview mode', async () => (await statusItems(page)).some((s) => /apply mode preview/.test(s)) || null, 15000);
  try {
    await selectLines(page, MEAN_FIRST, MEAN_LAST);
    await palette(page, 'CopySpec: Refine Selection');
    await answer(page, 'how should the selection change', RENAME);
    await until('three hunks offered', async () => (await lensLinks(page, 'Accept').count()) === 3 || null, 180000);
    const before = await save(page);
    if (before !== MEAN) throw new Error('the buffer changed before Accept: ' + JSON.stringify(before));
    await clearToasts(page);
    await palette(page, 'View: Hide Panel'); // the Comments panel the streaming zone opened
    await restCursor(page);
    await page.screenshot({ path: path.join(SHOTS, 'preview.png') });
    await page.keyboard.press('Control+Shift+Enter'); // Accept all
    await until('the hunks to go', async () => (await lensLinks(page, 'Accept').count()) === 0 || null, 10000);
    const accepted = await save(page);
    if (accepted !== mean(MEAN_ANSWER)) throw new Error('Accept all did not put the answer in: ' + JSON.stringify(accepted));
    await focusEditor(page);
    await page.keyboard.press('Control+Z');
    if (await save(page) !== MEAN) throw new Error('one undo did not restore the original after Accept all');
    // Reject all: the same again, then Ctrl+Shift+Backspace.
    await selectLines(page, MEAN_FIRST, MEAN_LAST);
    await palette(page, 'CopySpec: Refine Selection');
    await answer(page, 'how should the selection change', RENAME);
    await until('three hunks offered', async () => (await lensLinks(page, 'Accept').count()) === 3 || null, 180000);
    await focusEditor(page);
    await page.keyboard.press('Control+Shift+Backspace');
    await until('the hunks to go', async () => (await lensLinks(page, 'Accept').count()) === 0 || null, 10000);
    if (await save(page) !== MEAN) throw new Error('Reject all changed the file');
    return 'accept all: exactly the answer, one undo; reject all: unchanged';
  } finally {
    await palette(page, 'CopySpec: Toggle Preview Mode');
  }
});

scenario('fix from a diagnostic\'s quick fix', async (page) => {
  // VS Code's own JSON support reports the syntax error; CopySpec offers to fix it.
  await settle(page);
  const bad = path.join(WS, 'bad.json');
  fs.writeFileSync(bad, '{\n  "name": "demo",\n  "count": 3,,\n  "ok": true\n}\n');
  await openFile(page, 'bad.json', '"count"');
  await until('the JSON diagnostic', () => page.locator('.squiggly-error').count(), 60000);
  await focusEditor(page);
  await page.keyboard.press('Control+Home');
  for (let i = 0; i < 2; i++) await page.keyboard.press('ArrowDown');
  await page.keyboard.press('End');
  await page.keyboard.press('ArrowLeft');
  await page.keyboard.press('Control+.');
  const menu = page.locator('.action-widget');
  await menu.waitFor({ state: 'visible', timeout: 15000 });
  await until('the fix action', async () => /fix this error/.test(await menu.innerText()) || null, 10000);
  while (!/fix this error/.test(await page.locator('.action-widget .monaco-list-row.focused').innerText().catch(() => ''))) {
    await page.keyboard.press('ArrowDown');
  }
  await page.keyboard.press('Enter');
  const done = await outcome(page);
  if (!/done|check still fails/.test(done)) throw new Error(done);
  // Best-effort tidying (the fix itself is checked above): later scenarios need no editor.
  await clearToasts(page).catch(() => {});
  await palette(page, 'File: Revert File').catch(() => {});
  await palette(page, 'View: Close Editor').catch(() => {});
  return done;
});

scenario('the output channel is quiet (no progress bars, no library warnings)', async () => {
  const dir = path.join(DATA, 'logs');
  const files = [];
  const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).forEach((e) => {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p); else if (/CopySpec\.log$/.test(e.name)) files.push(p);
  });
  walk(dir);
  if (!files.length) throw new Error('no CopySpec output channel log');
  const text = files.map((f) => fs.readFileSync(f, 'utf8')).join('\n');
  const noisy = text.split(/\r?\n|\r/).filter((l) => /\d+%\||Warning:|it\/s\]/.test(l));
  if (noisy.length) throw new Error('noise in the output channel:\n  ' + noisy.slice(0, 5).join('\n  '));
  return `${text.split('\n').filter(Boolean).length} lines, none noisy`;
});

(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  fs.writeFileSync(FILE, SHORT);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  const page = await browser.newPage({ viewport: { width: 1100, height: 640 } });
  const failures = [];
  try {
    await page.goto(URL);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60000 });
    await page.keyboard.press('Control+P');
    const qi = page.locator('.quick-input-widget .quick-input-box input');
    await qi.waitFor({ state: 'visible', timeout: 60000 });
    await qi.fill('sample.py');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'sample.py' }).first().waitFor({ timeout: 60000 });
    await page.keyboard.press('Enter');
    await page.locator('.editor-instance .monaco-editor .view-line', { hasText: 'count_items' }).first().waitFor({ timeout: 30000 });
    // The default model loads in about 20 s on an idle core; allow what the server itself does
    // (its load timeout, 300 s) on a busy machine.
    const ready = await until('the model', async () => (await statusItems(page)).find((s) => /\((ready|error)\)/.test(s)), 300000);
    if (/error/.test(ready)) throw new Error('server: ' + ready);
    log('ready:', ready);
    if (!GATE) throw new Error('E2E_GATE is not set (run.sh sets it)');
    release();
    if (!serverHasGate()) throw new Error(`the server was not started with COPYSPEC_TEST_GATE=${GATE}`);
    const only = process.env.E2E_ONLY && new RegExp(process.env.E2E_ONLY);
    for (const { name, fn } of scenarios) {
      if (only && !only.test(name)) continue;
      const started = Date.now();
      try {
        const detail = await fn(page);
        log(`PASS ${name} (${((Date.now() - started) / 1000).toFixed(1)}s): ${detail}`);
      } catch (e) {
        failures.push(name);
        log(`FAIL ${name}: ${e.stack || e}`);
        await page.screenshot({ path: path.join(SHOTS, `error-${failures.length}.png`) }).catch(() => {});
        release();
        await page.keyboard.press('Escape').catch(() => {});
        await palette(page, 'CopySpec: Cancel').catch(() => {});
        await clearToasts(page).catch(() => {});
      }
    }
  } catch (e) {
    failures.push('setup');
    log('FAIL setup:', e.stack || e);
    await page.screenshot({ path: path.join(SHOTS, 'error-setup.png') }).catch(() => {});
  } finally {
    await browser.close();
  }
  log(failures.length ? `FAILED: ${failures.join('; ')}` : `all ${scenarios.length} scenarios passed`);
  process.exit(failures.length ? 1 : 0);
})();
