// A Rollup plugin that turns TypeScript into JavaScript file by file, without type-checking:
// `npm run typecheck` (tsc --noEmit) checks the whole project once, so the build need not do it
// again for each output. The sources are written for this (`isolatedModules`,
// `verbatimModuleSyntax`): each file compiles on its own.
//
// It also writes the development flag (src/dev.ts): every use of `DEV` becomes, as each build
// asks, the bare expression `process.env.NODE_ENV !== 'production'` (the builds for bundlers
// and Node: a bundler that defines NODE_ENV folds it where it stands, and drops what it guards)
// or a constant (the builds for browsers without a bundler, which have no `process`).
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

/** Where the flag is imported from (a relative path to src/dev.ts, written './dev.js' as sources do). */
const devModule = /(?:^|\/)dev\.js$/

/**
 * A TypeScript transformer that replaces the `DEV` imported from src/dev.ts by `flag`: `'env'`
 * for the expression on NODE_ENV, or `true`/`false`. The import goes, so the built file never
 * reads a shared constant that a bundler could not fold.
 * @param {'env' | boolean} flag
 */
function devFlag(flag) {
  return (context) => (file) => {
    const f = context.factory
    let imported = false
    const statements = file.statements.flatMap((statement) => {
      if (!ts.isImportDeclaration(statement) || !devModule.test(statement.moduleSpecifier.text)) return [statement]
      const clause = statement.importClause
      const named = clause?.namedBindings
      if (!clause || clause.name || !named || !ts.isNamedImports(named)) {
        throw new Error(`${file.fileName}: import { DEV } from the dev module by name only`)
      }
      const rest = named.elements.filter((element) => element.name.text !== 'DEV')
      imported = rest.length < named.elements.length
      if (rest.length === 0) return []
      return [
        f.updateImportDeclaration(
          statement,
          statement.modifiers,
          f.updateImportClause(clause, clause.isTypeOnly, undefined, f.updateNamedImports(named, rest)),
          statement.moduleSpecifier,
          statement.attributes,
        ),
      ]
    })
    if (!imported) return file
    const replacement = () =>
      flag === 'env'
        ? f.createParenthesizedExpression(
            f.createBinaryExpression(
              f.createPropertyAccessExpression(f.createPropertyAccessExpression(f.createIdentifier('process'), 'env'), 'NODE_ENV'),
              ts.SyntaxKind.ExclamationEqualsEqualsToken,
              f.createStringLiteral('production', true),
            ),
          )
        : flag
          ? f.createTrue()
          : f.createFalse()
    const visit = (node) => {
      if (ts.isIdentifier(node) && node.text === 'DEV') {
        const parent = node.parent
        if (ts.isPropertyAccessExpression(parent) && parent.name === node) return node // another object's DEV
        // A DEV of its own, or `{ DEV }`, would be misread: the flag is only ever read as a value.
        const named = 'name' in parent && parent.name === node
        if (named || ts.isShorthandPropertyAssignment(parent) || ts.isBindingElement(parent) || ts.isExportSpecifier(parent)) {
          throw new Error(`${file.fileName}: DEV may only be read as a value (found in a ${ts.SyntaxKind[parent.kind]})`)
        }
        return replacement()
      }
      return ts.visitEachChild(node, visit, context)
    }
    return f.updateSourceFile(
      file,
      statements.map((statement) => ts.visitNode(statement, visit)),
    )
  }
}

/**
 * A TypeScript transformer that writes `Number.POSITIVE_INFINITY` (what the lint asks the sources
 * to say) as `Infinity`, the same value, which minifiers shorten to `1/0`: the client says it
 * some twenty-five times.
 */
const infinity = (context) => (file) => {
  const visit = (node) =>
    ts.isPropertyAccessExpression(node) &&
    ts.isIdentifier(node.expression) &&
    node.expression.text === 'Number' &&
    node.name.text === 'POSITIVE_INFINITY'
      ? context.factory.createIdentifier('Infinity')
      : ts.visitEachChild(node, visit, context)
  return ts.visitNode(file, visit)
}

const typescriptFile = /\.(?:[cm]?ts|tsx)$/
const declarationFile = /\.d\.[cm]?ts$/

/** Transpiled files by flag, id and text, shared by every instance: a file that does not read the flag is transpiled once. */
const done = new Map()

/**
 * The plugin. One instance can serve several configs: a file's output is kept by its text, so
 * the ESM, CommonJS and IIFE builds transpile each file once (a file that reads `DEV` once per flag).
 * @param {{ tsconfig: string, dev?: 'env' | boolean }} options - `dev`: what `DEV` becomes (default `'env'`)
 */
export function transpile({ tsconfig, dev = 'env' }) {
  const options = compilerOptions(tsconfig)
  const transformers = { before: [devFlag(dev), infinity] }
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
      const key = `${/\bDEV\b/.test(code) ? dev : ''}\0${id}\0${code}`
      let output = done.get(key)
      if (output === undefined) {
        const result = ts.transpileModule(code, { fileName: id, compilerOptions: options, reportDiagnostics: true, transformers })
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
