// encode.mjs - tokenizes lines of text with @lenml/tokenizers (a port of transformers.js's
// tokenizers), loading a tokenizer directory's tokenizer.json and tokenizer_config.json as a
// Hugging Face library does.
//
//   node encode.mjs TOKENIZER_DIR < lines.txt > ids.txt
//
// One output line per input line: the token ids without special tokens, separated by spaces.
import { TokenizerLoader } from "@lenml/tokenizers";
import fs from "fs";

const dir = process.argv[2];
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(dir + "/tokenizer.json", "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(dir + "/tokenizer_config.json", "utf8")),
});
const lines = fs.readFileSync(0, "utf8").split("\n");
if (lines.length && lines[lines.length - 1] === "") lines.pop();
const out = lines.map((l) => tokenizer.encode(l, { add_special_tokens: false }).join(" "));
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
