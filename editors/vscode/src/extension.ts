// Entry point: starts `copyspec-lsp --stdio` with the user's settings and wires the UI commands.
import { ChildProcess, spawn } from 'child_process';
import * as vscode from 'vscode';
import { LanguageClient } from 'vscode-languageclient/node';
import { Controller } from './controller';
import { initializationOptions } from './logic';

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
  client = new LanguageClient('copyspec', 'CopySpec', serverOptions, {
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions: () => initializationOptions((key) => settings().get(key)),
    outputChannel: log,
  });
  const controller = new Controller(client, statusBar, log);

  // UI ids live under copyspec.ui.*: the client itself registers the server's copyspec.* commands.
  const commands: [string, () => unknown][] = [
    ['copyspec.ui.refineSelection', () => controller.refineSelection()],
    ['copyspec.ui.fixAtCursor', () => controller.fixAtCursor()],
    ['copyspec.ui.followUp', () => controller.followUp()],
    ['copyspec.ui.cancel', () => controller.cancel()],
    ['copyspec.ui.showStatus', () => controller.showStatus()],
  ];
  context.subscriptions.push(
    log, statusBar, controller,
    ...commands.map(([id, run]) => vscode.commands.registerCommand(id, run)),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (!e.affectsConfiguration('copyspec')) return;
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

function spawnServer(cfg: vscode.WorkspaceConfiguration, log: vscode.OutputChannel): Promise<ChildProcess> {
  const command = cfg.get<string>('server.path', 'copyspec-lsp');
  const args = ['--stdio', ...cfg.get<string[]>('server.args', [])];
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  log.appendLine(`starting ${command} ${args.join(' ')}`);
  const child = spawn(command, args, { cwd });
  child.stderr.on('data', (data) => log.append(String(data)));
  // Resolve only once the process exists, so a wrong path is reported instead of hanging.
  return new Promise((resolve, reject) => {
    child.once('spawn', () => resolve(child));
    child.once('error', reject);
  });
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
