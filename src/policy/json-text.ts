/**
 * A syntax-only pass over JSON text before JSON.parse. It exists for two reasons: JSON.parse does not
 * always say where an error is ("Unexpected token ..."), and a document nested thousands of levels deep
 * must be refused before anything recursive (validation, evaluation) walks it. Iterative, one pass.
 */

export interface JsonTextError {
  kind: 'syntax' | 'depth';
  offset: number;
  line: number;
  column: number;
  message: string;
}

const WHITESPACE = new Set([' ', '\t', '\n', '\r']);
const ESCAPES = new Set(['"', '\\', '/', 'b', 'f', 'n', 'r', 't']);
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;

/** 1-based line and column (in UTF-16 code units) of an offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text[i] === '\n') {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

function show(char: string | undefined): string {
  return char === undefined ? 'end of input' : JSON.stringify(char);
}

type State = 'value' | 'valueOrClose' | 'key' | 'keyOrClose' | 'colon' | 'after';

/** Returns the first syntax error, or a nesting deeper than `maxDepth`; undefined when the text is valid JSON. */
export function scanJsonText(text: string, maxDepth: number): JsonTextError | undefined {
  const stack: ('{' | '[')[] = [];
  let state: State = 'value';
  let i = 0;
  const fail = (offset: number, message: string, kind: JsonTextError['kind'] = 'syntax'): JsonTextError => ({
    kind,
    offset,
    ...lineColumn(text, offset),
    message,
  });

  const scanString = (): JsonTextError | undefined => {
    const start = i;
    i++;
    for (;;) {
      const c = text[i];
      if (c === undefined) return fail(start, 'unterminated string');
      if (c === '"') {
        i++;
        return undefined;
      }
      if (c < ' ') return fail(i, 'control character in string; escape it (\\n, \\t, \\u00XX)');
      if (c === '\\') {
        const e = text[i + 1];
        if (e === 'u') {
          if (!HEX4.test(text.slice(i + 2, i + 6)))
            return fail(i, 'bad \\u escape; expected four hex digits');
          i += 6;
        } else if (e !== undefined && ESCAPES.has(e)) i += 2;
        else return fail(i, `bad escape \\${e ?? ''} in string`);
      } else i++;
    }
  };

  for (;;) {
    while (i < text.length && WHITESPACE.has(text[i] as string)) i++;
    const c = text[i];
    if (c === undefined) {
      if (state === 'after' && stack.length === 0) return undefined;
      return fail(i, 'unexpected end of input');
    }
    switch (state) {
      case 'value':
      case 'valueOrClose': {
        if (state === 'valueOrClose' && c === ']') {
          stack.pop();
          i++;
          state = 'after';
        } else if (c === '{' || c === '[') {
          if (stack.length >= maxDepth)
            return fail(i, `document is nested deeper than ${maxDepth} levels`, 'depth');
          stack.push(c);
          i++;
          state = c === '{' ? 'keyOrClose' : 'valueOrClose';
        } else if (c === '"') {
          const error = scanString();
          if (error) return error;
          state = 'after';
        } else if (c === '-' || (c >= '0' && c <= '9')) {
          NUMBER.lastIndex = i;
          if (!NUMBER.test(text)) return fail(i, 'bad number');
          i = NUMBER.lastIndex;
          state = 'after';
        } else {
          const word = ['true', 'false', 'null'].find((w) => text.startsWith(w, i));
          if (!word) return fail(i, `unexpected ${show(c)}; expected a value`);
          i += word.length;
          state = 'after';
        }
        break;
      }
      case 'key':
      case 'keyOrClose': {
        if (state === 'keyOrClose' && c === '}') {
          stack.pop();
          i++;
          state = 'after';
          break;
        }
        if (c !== '"') return fail(i, `unexpected ${show(c)}; expected a double-quoted property name`);
        const error = scanString();
        if (error) return error;
        state = 'colon';
        break;
      }
      case 'colon': {
        if (c !== ':') return fail(i, `unexpected ${show(c)}; expected ':' after the property name`);
        i++;
        state = 'value';
        break;
      }
      case 'after': {
        const top = stack[stack.length - 1];
        if (top === undefined) return fail(i, `unexpected ${show(c)} after the end of the document`);
        const close = top === '{' ? '}' : ']';
        if (c === ',') {
          i++;
          state = top === '{' ? 'key' : 'value';
        } else if (c === close) {
          stack.pop();
          i++;
        } else return fail(i, `unexpected ${show(c)}; expected ',' or '${close}'`);
        break;
      }
    }
  }
}
