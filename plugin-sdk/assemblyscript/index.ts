// Package entry for asc: `import { ... } from "collector-plugin-sdk"` resolves to
// node_modules/collector-plugin-sdk/index.ts (asc 0.28 does not read "ascMain").
export * from "./assembly/index";
