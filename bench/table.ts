/**
 * Renders a BenchReport as a plain-text table for a terminal: strings left,
 * numbers right with the column's decimals, null as "-", notes below.
 */
import type { BenchReport, Cell, Column } from "./benchmark.ts";

export function formatReport(report: BenchReport): string {
  const header = report.columns.map((column) => column.label);
  const body = report.rows.map((row) => report.columns.map((column) => formatCell(row[column.key] ?? null, column)));
  const widths = header.map((label, i) => Math.max(label.length, ...body.map((cells) => (cells[i] ?? "").length)));
  const isNumeric = report.columns.map((column) => report.rows.some((row) => typeof row[column.key] === "number"));
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (isNumeric[i] === true ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [
    report.title,
    "",
    line(header),
    line(widths.map((width) => "-".repeat(width))),
    ...body.map(line),
    ...(report.notes.length > 0 ? ["", ...report.notes.map((note) => `* ${note}`)] : []),
  ].join("\n");
}

function formatCell(value: Cell, column: Column): string {
  if (value === null) return "-";
  if (typeof value === "string") return value;
  return value.toLocaleString("en-US", {
    minimumFractionDigits: column.digits ?? 0,
    maximumFractionDigits: column.digits ?? 0,
  });
}
