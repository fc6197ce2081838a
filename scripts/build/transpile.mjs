// A Rollup plugin that turns TypeScript into JavaScript file by file, without type-checking:
// `npm run typecheck` (tsc --noEmit) checks the whole project once, so the build need not do it
// again for each output. The sources are written for this (`isolatedModules`,
// `verbatimModuleSyntax`): each file compiles on its own.
import { existsSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import ts from 'typescript'

/** The compiler options of a tsconfig file, with its `extends` applied; throws on a bad config. */
function compilerOptions(tsconfig) {
  const parsed = ts.getParsedCommandLineOfConfigFile(tsconfig, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: fail })
  if (!parsed) throw new Error(`${tsconfig}: cannot read it`)
  if (parsed.errors.length > 0) fail(parsed.errors[0])
  return parsed.options
}

function fail(diagnostic) {
  throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'))
}

const typescriptFile = /\.(?:[cm]?ts|tsx)$/
const declarationFile = /\.d\.[cm]?ts$/

/**
 * The plugin. One instance can serve several configs: a file's output is kept by its text, so
 * the ESM, CommonJS and IIFE builds transpile each file once.
 * @param {{ tsconfig: string }} options
 */
export function transpile({ tsconfig }) {
  const options = compilerOptions(tsconfig)
  const done = new Map()
  return {
    name: 'transpile-typescript',

    // Sources import each other as './x.js' (what Node resolves once built): find './x.ts'.
    resolveId(source, importer) {
      if (!importer || !typescriptFile.test(importer) || !(source.startsWith('./') || source.startsWith('../'))) return null
      const path = resolve(dirname(importer), source)
      const stem = path.replace(/\.[cm]?js$/, '')
      for (const candidate of [`${stem}.ts`, `${stem}.tsx`, `${path}/index.ts`]) if (existsSync(candidate)) return candidate
      return null
    },

    transform(code, id) {
      if (!typescriptFile.test(id) || declarationFile.test(id)) return null
      const key = `${id}\0${code}`
      let output = done.get(key)
      if (output === undefined) {
        const result = ts.transpileModule(code, { fileName: id, compilerOptions: options, reportDiagnostics: true })
        const errors = (result.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error)
        if (errors.length > 0) {
          const [first] = errors
          const at = first.file && first.start !== undefined ? first.file.getLineAndCharacterOfPosition(first.start) : undefined
          this.error({
            message: ts.flattenDiagnosticMessageText(first.messageText, '\n'),
            id,
            loc: at && { line: at.line + 1, column: at.character },
          })
        }
        output = result.outputText
        done.set(key, output)
      }
      return { code: output, map: null }
    },
  }
}
