// @vitest-environment node
/**
 * docs/ERRORS.md cannot drift from the source: every error class the package exports, every code
 * of `TetherErrorCode` and `ReplyErrorCode`, every error code written in src/, and every close
 * code src/ sends or branches on has a section (a heading, whose anchor messages may link to);
 * every `docs/ERRORS.md#…` link in src/ and every `#…` link in the page lands on one.
 *
 * The source is read with the TypeScript parser, so comments and examples do not count.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'
import { documented } from '../src/errors.js'

const root = fileURLToPath(new URL('../', import.meta.url))
const page = readFileSync(join(root, 'docs/ERRORS.md'), 'utf8')

/** The anchor a heading gets where Markdown is rendered (GitHub's rule): lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-')

/** Headings outside code blocks. */
function headings(markdown: string): string[] {
  let fenced = false
  const found: string[] = []
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced
    else if (!fenced && /^#{1,6} /.test(line)) found.push(line.replace(/^#+ /, ''))
  }
  return found
}
const anchors = new Set(headings(page).map(slug))

function sources(dir: string): ts.SourceFile[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => {
      const file = join(entry.parentPath, entry.name)
      return ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
    })
}
// The conformance kit is not the library: the codes it writes are what it asks a server under
// test to answer with (PROTOCOL.md §12), never errors a user of the library sees.
const files = sources(join(root, 'src')).filter((file) => !relative(root, file.fileName).startsWith(join('src', 'conformance')))
const where = (node: ts.Node) => {
  const file = node.getSourceFile()
  return `${relative(root, file.fileName)}:${file.getLineAndCharacterOfPosition(node.getStart()).line + 1}`
}

function visit(callback: (node: ts.Node) => void): void {
  const walk = (node: ts.Node) => {
    callback(node)
    ts.forEachChild(node, walk)
  }
  for (const file of files) walk(file)
}

/** The string literals of a union type alias declared in src/errors.ts. */
function unionMembers(name: string): string[] {
  const errors = files.find((file) => file.fileName.endsWith(join('src', 'errors.ts')))!
  const alias = errors.statements.find((s): s is ts.TypeAliasDeclaration => ts.isTypeAliasDeclaration(s) && s.name.text === name)
  expect(alias, `type ${name} in src/errors.ts`).toBeDefined()
  const members = ts.isUnionTypeNode(alias!.type) ? alias!.type.types : [alias!.type]
  return members.flatMap((member) => (ts.isLiteralTypeNode(member) && ts.isStringLiteral(member.literal) ? [member.literal.text] : []))
}

/** Whether a numeric literal is a close code in use: sent, compared with a `code`, or a `code`'s value or default. */
function isCloseCode(node: ts.NumericLiteral): boolean {
  const value = Number(node.text)
  if (!(value >= 1000 && value <= 4999)) return false
  const parent = node.parent
  const named = (n: ts.Node) => (ts.isIdentifier(n) || ts.isPropertyAccessExpression(n)) && /code$/i.test(n.getText())
  if (ts.isCallExpression(parent) && parent.arguments[0] === node) {
    return ts.isPropertyAccessExpression(parent.expression) && parent.expression.name.text === 'close'
  }
  if (ts.isPropertyAssignment(parent) || ts.isParameter(parent) || ts.isVariableDeclaration(parent)) {
    return /code/i.test(parent.name.getText())
  }
  if (ts.isBinaryExpression(parent)) {
    const op = parent.operatorToken.kind
    const other = parent.left === node ? parent.right : parent.left
    return (op === ts.SyntaxKind.EqualsEqualsEqualsToken || op === ts.SyntaxKind.ExclamationEqualsEqualsToken) && named(other)
  }
  return false
}

describe('docs/ERRORS.md', () => {
  it('has a section for every code of TetherErrorCode and of ReplyErrorCode', () => {
    const codes = [...unionMembers('TetherErrorCode'), ...unionMembers('ReplyErrorCode')]
    expect(codes).toContain('ERR_QUEUE_FULL') // the parse found the union
    expect(codes).toContain('ERR_INTERNAL')
    expect(codes.filter((code) => !anchors.has(slug(code)))).toEqual([])
  })

  it('has the section each production message points to, for every code tethersocket creates', () => {
    // A production build's message is `documented(code)`: the code and its anchor on this page.
    for (const code of unionMembers('TetherErrorCode')) {
      const message = documented(code)
      const anchor = /^([A-Z_]+): see docs\/ERRORS\.md#([\w-]+)$/.exec(message)
      expect(anchor?.[1], message).toBe(code)
      expect(anchors.has(anchor?.[2] ?? ''), message).toBe(true)
    }
  })

  it('has a section for every error code written in src/ (string literals such as ERR_… or MODULE_NOT_FOUND)', () => {
    const used = new Map<string, string>()
    visit((node) => {
      if ((ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) && /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$/.test(node.text)) {
        used.set(node.text, where(node))
      }
    })
    expect([...used.keys()]).toEqual(expect.arrayContaining(['ERR_UNSUPPORTED', 'ERR_CREATE', 'ERR_INTERNAL', 'MODULE_NOT_FOUND']))
    const missing = [...used].filter(([code]) => !anchors.has(slug(code))).map(([code, at]) => `${code} (${at})`)
    expect(missing).toEqual([])
  })

  it('has a section for every error class the package exports', async () => {
    const entries = await Promise.all([
      import('../src/index.js'),
      import('../src/server/index.js'),
      import('../src/redis/index.js'),
      import('../src/bindings/react.js'),
      import('../src/bindings/vue.js'),
      import('../src/persist/index.js'),
    ])
    const classes = new Set<string>()
    for (const entry of entries) {
      for (const [name, value] of Object.entries(entry)) {
        if (typeof value === 'function' && value.prototype instanceof Error) classes.add(name)
      }
    }
    expect([...classes]).toEqual(expect.arrayContaining(['TetherError', 'QueueFullError', 'ReplyError', 'RequestError']))
    expect([...classes].filter((name) => !anchors.has(slug(name)))).toEqual([])
  })

  it('has a section for every close code src/ sends or branches on', () => {
    const used = new Map<number, string>()
    const frames = files.find((file) => file.fileName.endsWith(join('src', 'protocol', 'frames.ts')))!
    visit((node) => {
      if (ts.isNumericLiteral(node) && isCloseCode(node)) used.set(Number(node.text), where(node))
    })
    // Every value of the protocol's CloseCode table, used or not.
    ts.forEachChild(frames, function find(node): void {
      if (ts.isVariableDeclaration(node) && node.name.getText() === 'CloseCode') {
        node.forEachChild(function values(child): void {
          if (ts.isNumericLiteral(child)) used.set(Number(child.text), where(child))
          child.forEachChild(values)
        })
      } else node.forEachChild(find)
    })
    expect([...used.keys()]).toEqual(expect.arrayContaining([1000, 1001, 1002, 1006, 1013, 4000, 4002, 4401]))
    const missing = [...used].filter(([code]) => !anchors.has(String(code))).map(([code, at]) => `${code} (${at})`)
    expect(missing).toEqual([])
  })

  it('has the anchor of every docs/ERRORS.md link in src/', () => {
    const links: string[] = []
    visit((node) => {
      if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateHead(node) || ts.isTemplateMiddle(node)) {
        for (const match of node.text.matchAll(/docs\/ERRORS\.md#([\w-]+)/g)) links.push(match[1])
      }
    })
    expect(links).toContain('module_not_found')
    expect(links.filter((anchor) => !anchors.has(anchor))).toEqual([])
  })

  it('links only to anchors it has', () => {
    const links = [...page.matchAll(/\]\(#([^)]+)\)/g)].map((match) => match[1])
    expect(links.length).toBeGreaterThan(10)
    expect(links.filter((anchor) => !anchors.has(anchor))).toEqual([])
  })

  it('gives each heading its own anchor', () => {
    const all = headings(page).map(slug)
    expect(all.filter((anchor, i) => all.indexOf(anchor) !== i)).toEqual([])
  })
})
