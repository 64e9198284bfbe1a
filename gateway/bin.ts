#!/usr/bin/env node
// `npx gateway`: the package's command. Kept apart from main.ts so that later start-up work
// (error reporting that must load before everything else) has one obvious place.
import { main } from './main.ts'

process.exitCode = await main(process.argv.slice(2))
