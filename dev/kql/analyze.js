// Parses and analyses KQL queries with Microsoft's Kusto.Language (@kusto/language-service-next)
// against a table schema, and prints every diagnostic as JSON.
// stdin:  {"tables": {"Name": {"Column": "type", ...}}, "queries": ["...", ...]}
// stdout: [[{"code", "severity", "message", "start", "length"}, ...], ...]  one list per query
"use strict";

// Kusto.Language is C# compiled with Bridge.NET: its runtime must be loaded first, as a global.
require("@kusto/language-service-next/bridge.js");
require("@kusto/language-service-next/Kusto.Language.Bridge.js");

const Kusto = global.Kusto;

function globalsFor(tables) {
  const symbols = Object.entries(tables).map(([name, columns]) => {
    const schema = "(" + Object.entries(columns).map(([column, type]) => column + ":" + type).join(", ") + ")";
    return new Kusto.Language.Symbols.TableSymbol.$ctor7(name, schema, null);
  });
  const database = new Kusto.Language.Symbols.DatabaseSymbol.$ctor1("hunting", symbols, false);
  return Kusto.Language.GlobalState.Default.WithDatabase(database);
}

function diagnostics(query, globals) {
  const found = Kusto.Language.KustoCode.ParseAndAnalyze(query, globals).GetDiagnostics();
  const out = [];
  for (let i = 0; i < found.Count; i++) {
    const d = found.getItem(i);
    out.push({code: d.Code, severity: String(d.Severity), message: d.Message, start: d.Start, length: d.Length});
  }
  return out;
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const request = JSON.parse(input);
  const globals = globalsFor(request.tables);
  process.stdout.write(JSON.stringify(request.queries.map((query) => diagnostics(query, globals))));
});
