/**
 * CSV for audit exports: RFC 4180 (comma, CRLF, fields with `"`, `,`, CR or LF quoted, quotes doubled), made safe
 * for spreadsheets and reversible so an export can be verified offline:
 *
 * - Formula injection: a cell starting with `=`, `+`, `-`, `@`, tab or CR is prefixed with `'` so a spreadsheet
 *   shows it as text. A cell that itself starts with `'` is prefixed too, so `decodeCell` can always drop exactly
 *   one leading quote and get the original back.
 * - NULL is an empty unquoted field; an empty string is `""`.
 */
const NEEDS_QUOTES = /[",\r\n]/;
const FORMULA_START = /^[=+\-@\t\r']/;

export function encodeCell(value: string | null): string {
  if (value === null) return '';
  const safe = FORMULA_START.test(value) ? `'${value}` : value;
  if (safe === '' || NEEDS_QUOTES.test(safe)) return `"${safe.replace(/"/g, '""')}"`;
  return safe;
}

export function encodeRow(cells: readonly (string | null)[]): string {
  return `${cells.map(encodeCell).join(',')}\r\n`;
}

/**
 * Parses CSV text produced by `encodeRow` (and any RFC 4180 text) into rows of cells, reversing the formula
 * guard. Works incrementally: feed chunks, get complete rows back.
 */
export class CsvRowParser {
  private cell = '';
  private cells: (string | null)[] = [];
  private quoted = false;
  private inQuotes = false;
  private pendingQuote = false;
  private pendingCr = false;

  push(chunk: string): (string | null)[][] {
    const rows: (string | null)[][] = [];
    for (const ch of chunk) {
      if (this.inQuotes) {
        if (this.pendingQuote) {
          this.pendingQuote = false;
          if (ch === '"') {
            this.cell += '"';
            continue;
          }
          this.inQuotes = false; // the quote closed the field; handle ch below
        } else if (ch === '"') {
          this.pendingQuote = true;
          continue;
        } else {
          this.cell += ch;
          continue;
        }
      }
      if (this.pendingCr) {
        this.pendingCr = false;
        if (ch === '\n') {
          rows.push(this.endRow());
          continue;
        }
        this.cell += '\r';
      }
      if (ch === '"' && this.cell === '' && !this.quoted) {
        this.inQuotes = true;
        this.quoted = true;
      } else if (ch === ',') {
        this.endCell();
      } else if (ch === '\r') {
        this.pendingCr = true;
      } else if (ch === '\n') {
        rows.push(this.endRow());
      } else {
        this.cell += ch;
      }
    }
    return rows;
  }

  /** Call at end of input: returns a last row without a line break, if any. */
  end(): (string | null)[][] {
    if (this.pendingQuote) {
      this.pendingQuote = false;
      this.inQuotes = false;
    }
    if (this.cell !== '' || this.cells.length > 0 || this.quoted) return [this.endRow()];
    return [];
  }

  private endCell(): void {
    const raw = this.cell;
    const value = !this.quoted && raw === '' ? null : raw.startsWith("'") ? raw.slice(1) : raw;
    this.cells.push(value);
    this.cell = '';
    this.quoted = false;
  }

  private endRow(): (string | null)[] {
    this.endCell();
    const row = this.cells;
    this.cells = [];
    return row;
  }
}
