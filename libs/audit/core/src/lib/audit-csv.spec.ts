import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CsvRowParser, encodeCell, encodeRow } from './audit-csv';

const parseAll = (text: string, chunk = 7) => {
  const parser = new CsvRowParser();
  const rows: (string | null)[][] = [];
  for (let i = 0; i < text.length; i += chunk) rows.push(...parser.push(text.slice(i, i + chunk)));
  rows.push(...parser.end());
  return rows;
};

describe('audit CSV', () => {
  it('quotes per RFC 4180 and uses CRLF', () => {
    expect(encodeRow(['a', 'b,c', 'say "hi"', 'two\nlines', null, ''])).toBe(
      'a,"b,c","say ""hi""","two\nlines",,""\r\n',
    );
  });

  it('defuses spreadsheet formulas with a leading quote', () => {
    expect(encodeCell('=HYPERLINK("http://x","click")')).toBe(`"'=HYPERLINK(""http://x"",""click"")"`);
    expect(['+1', '-1', '@SUM(A1)', '\tx', "'quoted"].map(encodeCell)).toEqual([
      "'+1",
      "'-1",
      "'@SUM(A1)",
      "'\tx",
      "''quoted",
    ]);
    expect(encodeCell('plain=text')).toBe('plain=text');
  });

  it('round-trips any cells, including nulls, empty strings and formula-like values, whatever the chunking', () => {
    const cell = fc.oneof(
      fc.constant(null),
      fc.string(),
      fc.constantFrom('=1+1', "'", '-', '"', '\r\n', ',', ''),
    );
    fc.assert(
      fc.property(
        fc.array(fc.array(cell, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1, max: 13 }),
        (rows, chunk) => {
          const text = rows.map(encodeRow).join('');
          expect(parseAll(text, chunk)).toEqual(rows);
        },
      ),
      { numRuns: 300 },
    );
  });
});
