// Open an `edge-sent eval --report` page in headless Chromium (puppeteer-core) and say what a reader sees:
// console messages and page errors, failed requests, and for each <figure> its id, its drawn size and how many
// shapes its SVG holds, its texts and which of them overlap another or reach outside the SVG; the variants
// table's width and wrapped cells; the verdict; optionally a full-page screenshot. Prints one JSON object.
//
//   node js/report-page.mjs FILE.html CHROMIUM_PATH [SCREENSHOT.png]
import { pathToFileURL } from "node:url";
import puppeteer from "puppeteer-core";

const [file, executablePath, screenshot] = process.argv.slice(2);
if (!file || !executablePath) {
  process.stderr.write("error: usage: node report-page.mjs FILE.html CHROMIUM_PATH [SCREENSHOT.png]\n");
  process.exit(2);
}
const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const report = { console: [], requests: [], figures: [] };
try {
  const page = await browser.newPage();
  page.on("console", (msg) => report.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => report.console.push(`pageerror: ${err.message}`));
  page.on("request", (req) => report.requests.push(req.url()));
  await page.setViewport({ width: 1000, height: 800 });
  await page.goto(pathToFileURL(file).href, { waitUntil: "load" });
  report.title = await page.title();
  report.figures = await page.$$eval("figure", (figures) =>
    figures.map((f) => {
      const svg = f.querySelector("svg");
      const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
      // every text's drawn box (transforms applied): pairs that overlap by more than half a pixel each way, and
      // texts that reach outside the SVG (cut off when drawn)
      const texts = svg ? [...svg.querySelectorAll("text")].map((t) => ({ text: t.textContent, box: t.getBoundingClientRect() })) : [];
      const overlaps = [];
      const outside = [];
      texts.forEach((a, i) => {
        const b = a.box;
        if (b.left < box.left - 0.5 || b.right > box.right + 0.5 || b.top < box.top - 0.5 || b.bottom > box.bottom + 0.5) {
          outside.push(a.text);
        }
        for (const c of texts.slice(i + 1)) {
          const dx = Math.min(b.right, c.box.right) - Math.max(b.left, c.box.left);
          const dy = Math.min(b.bottom, c.box.bottom) - Math.max(b.top, c.box.top);
          if (dx > 0.5 && dy > 0.5) overlaps.push([a.text, c.text]);
        }
      });
      return {
        id: f.id,
        width: box.width,
        height: box.height,
        shapes: svg ? svg.querySelectorAll("rect, line, path, circle").length : 0,
        caption: f.querySelector("figcaption")?.textContent ?? "",
        texts: texts.map((t) => t.text),
        overlaps,
        outside,
      };
    }),
  );
  report.tables = await page.$$eval("table", (tables) => tables.length);
  // the variants table: its width against the page's, and its cells drawn on one line (a number never broken)
  report.wide = await page.$$eval("table.wide", (tables) =>
    tables.map((t) => {
      const cells = [...t.querySelectorAll("td")];
      const lineHeight = Math.max(...cells.map((c) => parseFloat(getComputedStyle(c).lineHeight) || 16));
      return {
        width: t.getBoundingClientRect().width,
        page: t.parentElement.clientWidth - parseFloat(getComputedStyle(t.parentElement).paddingLeft) * 2,
        wrapped: cells.filter((c) => c.getClientRects()[0] && c.getBoundingClientRect().height > lineHeight * 1.6 + 8).map((c) => c.textContent),
        nowrap: cells.every((c) => getComputedStyle(c).whiteSpace === "nowrap"),
      };
    }),
  );
  report.verdict = await page.$eval("#verdict", (v) => ({ variant: v.dataset.variant ?? null, text: v.textContent })).catch(() => null);
  report.overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
} catch (err) {
  report.error = String(err.message ?? err);
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(report.error ? 1 : 0);
