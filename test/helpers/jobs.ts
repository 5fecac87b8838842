/**
 * How many cases a Python interop file runs at once (vitest.peft.config.ts's maxConcurrency) and how
 * many Python servers serve them (test/helpers/interop.ts): TABTUNE_INTEROP_JOBS, else 2 to 4 by the
 * machine's cores. Each case is a chain of short processes (tabtune, Python commands), so two at once
 * keep two cores busy even where each alone leaves one idle.
 */
import { availableParallelism } from 'node:os';

export const INTEROP_JOBS =
  Number(process.env.TABTUNE_INTEROP_JOBS) || Math.min(4, Math.max(2, availableParallelism()));
