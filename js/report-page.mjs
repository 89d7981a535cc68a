// Open an `edge-sent eval --report` page in headless Chromium (puppeteer-core) and say what a reader sees:
// console messages and page errors, failed requests, and for each <figure> its id, its drawn size and how many
// shapes its SVG holds; optionally a full-page screenshot. Prints one JSON object.
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
      return {
        id: f.id,
        width: box.width,
        height: box.height,
        shapes: svg ? svg.querySelectorAll("rect, line, path, circle").length : 0,
        caption: f.querySelector("figcaption")?.textContent ?? "",
      };
    }),
  );
  report.tables = await page.$$eval("table", (tables) => tables.length);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
} catch (err) {
  report.error = String(err.message ?? err);
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(report.error ? 1 : 0);
