import os from 'node:os';
import path from 'node:path';

/**
 * Where Parallax keeps its data when neither --data-dir nor PARALLAX_HOME says otherwise:
 * the same per-user folder Electron's app.getPath('userData') gives the desktop app, so
 * the CLI and the workbench share one database.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string {
  if (env.PARALLAX_HOME) return path.resolve(env.PARALLAX_HOME);
  const home = os.homedir();
  switch (platform) {
    case 'win32':
      return path.join(env.APPDATA ?? path.join(home, 'AppData', 'Roaming'), 'Parallax');
    case 'darwin':
      return path.join(home, 'Library', 'Application Support', 'Parallax');
    default:
      return path.join(env.XDG_CONFIG_HOME ?? path.join(home, '.config'), 'Parallax');
  }
}
