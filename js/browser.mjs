// Drive the browser page (examples/web) in headless Chromium with puppeteer-core: wait for its first answer,
// then classify each text read from stdin (one a line) the way a user does, and print one JSON object.
//
//   node js/browser.mjs URL CHROMIUM_PATH [SCREENSHOT.png] < texts.txt
//
// The first text is typed key by key; the others are pasted (set as the value) to keep 200 texts quick.
// Every one is classified by clicking the button, and read back from the page's result element.
import puppeteer from "puppeteer-core";

const [url, executablePath, screenshot] = process.argv.slice(2);
if (!url || !executablePath) {
  process.stderr.write("error: usage: node browser.mjs URL CHROMIUM_PATH [SCREENSHOT.png] < texts\n");
  process.exit(2);
}
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk); // not readFileSync(0): EAGAIN on a non-blocking pipe
const texts = Buffer.concat(chunks)
  .toString("utf8")
  .split("\n")
  .map((line) => line.replace(/\r$/, ""))
  .filter((line) => line.trim() !== "");

const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const report = { url, console: [], predictions: [] };
try {
  const page = await browser.newPage();
  page.on("console", (msg) => report.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => report.console.push(`pageerror: ${err.message}`));
  await page.setViewport({ width: 760, height: 440 });
  await page.goto(url, { waitUntil: "domcontentloaded" });
  // the page may reload itself once per fallback graph: poll across navigations
  const deadline = Date.now() + 120000;
  let state = {};
  while (!state.firstAnswerMs && !state.error) {
    if (Date.now() > deadline) throw new Error("no answer from the page within 120 s");
    await new Promise((resolve) => setTimeout(resolve, 50));
    state = await page.evaluate(() => ({ ...document.body.dataset })).catch(() => ({}));
  }
  if (state.error) throw new Error(`the page failed: ${state.error}`);
  report.first_answer_ms = Number(state.firstAnswerMs);
  report.load_ms = Number(state.loadMs); // the page's loadBundle: model fetch + session creation
  report.model_file = state.modelFile;
  report.fallback = state.fallback;
  report.cross_origin_isolated = await page.evaluate(() => globalThis.crossOriginIsolated === true);
  for (const [i, text] of texts.entries()) {
    await page.$eval("#text", (el) => {
      el.value = "";
    });
    if (i === 0) {
      await page.type("#text", text);
    } else {
      await page.$eval("#text", (el, value) => {
        el.value = value;
      }, text);
    }
    await page.click("#go");
    await page.waitForFunction((t) => document.getElementById("result").dataset.text === t, { timeout: 60000 }, text);
    const got = await page.$eval("#result", (el) => ({ ...el.dataset }));
    report.predictions.push({ label: got.label, probability: Number(got.probability), ms: Number(got.ms) });
  }
  if (screenshot) await page.screenshot({ path: screenshot });
} catch (err) {
  report.error = String(err.message ?? err);
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(report.error ? 1 : 0);
