"""The HTML page's style and its one script (click a header to sort), inline so the page stands alone."""

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; padding: 0 1em; color: #222; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { margin: 1.2em 0 0.4em; font-size: 1.05em; }
p.note { color: #555; margin: 0.2em 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e4e4e4; text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { cursor: pointer; background: #f4f4f4; user-select: none; vertical-align: bottom; }  /* headers may wrap */
th[data-dir=desc]::after { content: " ▼"; }
th[data-dir=asc]::after { content: " ▲"; }
td[title] { text-decoration: underline dotted #aaa; cursor: help; }
.ci { color: #777; font-size: 12px; }
tbody tr:hover { background: #fafae8; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1em; }
.curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 0.6em; }
.plots img, .curves img { width: 100%; }
"""

# Click a header to sort by it; click again to reverse. Cells carry their sort value.
JS = """
document.querySelectorAll("table.sortable th").forEach((th, col) => th.addEventListener("click", () => {
  const table = th.closest("table"), body = table.tBodies[0];
  const dir = th.dataset.dir === "desc" ? "asc" : "desc";
  table.querySelectorAll("th").forEach(h => delete h.dataset.dir);
  th.dataset.dir = dir;
  const value = row => row.cells[col].dataset.sort;
  const cmp = (a, b) => {
    const x = value(a), y = value(b), nx = parseFloat(x), ny = parseFloat(y);
    return isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
  };
  [...body.rows].sort((a, b) => dir === "asc" ? cmp(a, b) : cmp(b, a)).forEach(r => body.appendChild(r));
}));
"""
