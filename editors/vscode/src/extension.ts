// Entry point: starts `copyspec-lsp --stdio` with the user's settings and wires the UI commands.
import { spawn } from 'child_process';
import * as vscode from 'vscode';
import { ClientCapabilities, LanguageClient, StaticFeature, StreamInfo } from 'vscode-languageclient/node';
import { ActionArgument, Controller } from './controller';
import { SERVER_SETTINGS, initializationOptions, quietStderr } from './logic';

let client: LanguageClient | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const log = vscode.window.createOutputChannel('CopySpec');
  const statusBar = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  statusBar.text = 'CopySpec: starting';
  statusBar.command = 'copyspec.ui.showStatus';
  statusBar.show();

  const settings = () => vscode.workspace.getConfiguration('copyspec');
  // Both are functions so that client.restart() picks up edited settings.
  const serverOptions = () => spawnServer(settings(), log);
  let controller: Controller | undefined;
  client = new LanguageClient('copyspec', 'CopySpec', serverOptions, {
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions: () => initializationOptions((key) => settings().get(key)),
    outputChannel: log,
    middleware: {
      // The server's code actions name its own commands; the refine one needs an instruction
      // first, and both run through the controller (streaming diff, one undo step, progress).
      executeCommand: (command, args, next) => {
        const arg = args[0] as ActionArgument | undefined;
        if (controller && arg?.uri && command === 'copyspec.refine') return controller.refineAction(arg);
        if (controller && arg?.uri && command === 'copyspec.fix') return controller.fixAction(arg);
        return next(command, args);
      },
    },
  });
  // One progress UI: the controller's notification and status item. Without this the client
  // would also show the server's work-done progress as a second, disagreeing indicator.
  client.registerFeature(new NoWorkDoneProgress());
  controller = new Controller(client, statusBar, log);

  // UI ids live under copyspec.ui.*: the client itself registers the server's copyspec.* commands.
  const commands: [string, (...args: any[]) => unknown][] = [
    ['copyspec.ui.refineSelection', () => controller.refineSelection()],
    ['copyspec.ui.fixAtCursor', () => controller.fixAtCursor()],
    ['copyspec.ui.followUp', () => controller.followUp()],
    ['copyspec.ui.cancel', () => controller.cancel()],
    ['copyspec.ui.showStatus', () => controller.showStatus()],
    ['copyspec.ui.acceptHunk', (uri?: string, id?: number) => controller.acceptHunk(uri, id)],
    ['copyspec.ui.rejectHunk', (uri?: string, id?: number) => controller.rejectHunk(uri, id)],
    ['copyspec.ui.acceptAll', () => controller.acceptAll()],
    ['copyspec.ui.rejectAll', () => controller.rejectAll()],
    ['copyspec.ui.nextHunk', () => controller.nextHunk(true)],
    ['copyspec.ui.previousHunk', () => controller.nextHunk(false)],
    ['copyspec.ui.toggleApplyMode', async () => {
      const next = settings().get<string>('applyMode', 'stream') === 'preview' ? 'stream' : 'preview';
      await settings().update('applyMode', next, vscode.ConfigurationTarget.Global);
      vscode.window.setStatusBarMessage(`CopySpec: apply mode ${next}`, 3000);
    }],
  ];
  context.subscriptions.push(
    log, statusBar, controller,
    ...commands.map(([id, run]) => vscode.commands.registerCommand(id, run)),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      // Client-only settings (applyMode, cancelKeepsPartial) apply at once, without a restart.
      const server = ['server.path', 'server.args', ...SERVER_SETTINGS].some((k) => e.affectsConfiguration(`copyspec.${k}`));
      if (!server) return;
      const answer = await vscode.window.showInformationMessage(
        'CopySpec settings changed; restart the server to use them?', 'Restart');
      if (answer === 'Restart') await client?.restart();
    }),
  );

  try {
    await client.start();
  } catch (e) {
    statusBar.text = 'CopySpec: server failed';
    void vscode.window.showErrorMessage(
      `CopySpec: could not start "${settings().get('server.path')}" (${e}). Set copyspec.server.path.`);
    return;
  }
  await pollUntilLoaded(controller);
}

/**
 * Starts the server. It is handed to the client as streams, not as a ChildProcess, because
 * the client copies a ChildProcess's whole stderr into the output channel, noise included.
 */
function spawnServer(cfg: vscode.WorkspaceConfiguration, log: vscode.OutputChannel): Promise<StreamInfo> {
  const command = cfg.get<string>('server.path', 'copyspec-lsp');
  const args = ['--stdio', ...cfg.get<string[]>('server.args', [])];
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  log.appendLine(`starting ${command} ${args.join(' ')}`);
  // Library chatter (progress bars, warnings) is silenced at the source where it can be; what
  // still reaches stderr passes quietStderr, so the output channel keeps only real messages.
  const env = { ...process.env, ...QUIET_ENV };
  const child = spawn(command, args, { cwd, env });
  const debug = cfg.get<string>('logLevel', '') === 'debug';
  let rest = '';
  child.stderr.on('data', (data) => {
    const [lines, tail] = quietStderr(rest + String(data), debug);
    rest = tail;
    if (lines) log.append(lines);
  });
  // Resolve only once the process exists, so a wrong path is reported instead of hanging.
  return new Promise((resolve, reject) => {
    child.once('spawn', () => resolve({ reader: child.stdout, writer: child.stdin }));
    child.once('error', reject);
  });
}

/** Environment that keeps Hugging Face libraries from drawing progress bars or warning. */
const QUIET_ENV = { HF_HUB_DISABLE_PROGRESS_BARS: '1', TRANSFORMERS_VERBOSITY: 'error', TQDM_DISABLE: '1' };

/** Reports capabilities.window.workDoneProgress = false (see activate). */
class NoWorkDoneProgress implements StaticFeature {
  getState(): { kind: 'static' } { return { kind: 'static' }; }
  fillClientCapabilities(capabilities: ClientCapabilities): void {
    capabilities.window = { ...capabilities.window, workDoneProgress: false };
  }
  initialize(): void {}
  clear(): void {}
}

/** The model loads in the background after `initialized`; keep the status bar current until it settles. */
async function pollUntilLoaded(controller: Controller): Promise<void> {
  for (;;) {
    try {
      if ((await controller.refreshStatus()).state !== 'loading') return;
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export function deactivate(): Thenable<void> | undefined {
  return client?.stop();
}
