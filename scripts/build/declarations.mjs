// Emits the declarations (.d.ts) of the whole package with one TypeScript program, for
// rollup-plugin-dts to bundle per entry. Given .ts entries, that plugin builds a program (and
// type-checks) once per output; given .d.ts files it only bundles them.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import ts from 'typescript'

const format = {
  getCanonicalFileName: (name) => name,
  getCurrentDirectory: () => process.cwd(),
  getNewLine: () => '\n',
}

/**
 * Writes the declarations of `entries` (and of everything they import) to a temporary folder,
 * removed when the process exits, and returns where each entry's declaration file is.
 * @param {{ tsconfig: string, rootDir: string, entries: Record<string, string>, compilerOptions?: ts.CompilerOptions }} options
 * @returns {Record<string, string>} entry name → path of its .d.ts
 */
export function emitDeclarations({ tsconfig, rootDir, entries, compilerOptions = {} }) {
  const parsed = ts.getParsedCommandLineOfConfigFile(tsconfig, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: fail })
  if (!parsed) throw new Error(`${tsconfig}: cannot read it`)
  if (parsed.errors.length > 0) fail(parsed.errors[0])
  const outDir = mkdtempSync(join(tmpdir(), 'tethersocket-declarations-'))
  process.once('exit', () => rmSync(outDir, { recursive: true, force: true }))
  const options = {
    ...parsed.options,
    // The options rollup-plugin-dts itself compiles with, so the bundles come out the same.
    declaration: true,
    emitDeclarationOnly: true,
    noEmit: false,
    noEmitOnError: false,
    declarationMap: false,
    skipLibCheck: true,
    preserveSymlinks: true,
    target: ts.ScriptTarget.ESNext,
    resolveJsonModule: true,
    ...compilerOptions,
    rootDir: resolve(rootDir),
    outDir,
  }
  const program = ts.createProgram(Object.values(entries), options)
  const { diagnostics } = program.emit(undefined, undefined, undefined, true)
  const errors = [...program.getOptionsDiagnostics(), ...program.getSyntacticDiagnostics(), ...diagnostics].filter(
    (d) => d.category === ts.DiagnosticCategory.Error,
  )
  if (errors.length > 0) throw new Error(`declarations could not be emitted:\n${ts.formatDiagnostics(errors, format)}`)
  return Object.fromEntries(
    Object.entries(entries).map(([name, source]) => [
      name,
      join(outDir, relative(resolve(rootDir), resolve(source)).replace(/\.tsx?$/, '.d.ts')),
    ]),
  )
}

function fail(diagnostic) {
  throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'))
}
