/**
 * Every rule of the kit, in the order it runs them: from the opening to the heartbeat, so that
 * a server that fails early fails the rules that depend on it for a reason shown first.
 * @module
 */
import { framingRules } from './framing.js'
import { handshakeRules } from './handshake.js'
import { heartbeatRules } from './heartbeat.js'
import { requestRules } from './requests.js'
import { resumeRules } from './resume.js'
import type { Rule } from './run.js'
import { sequenceRules } from './sequence.js'

/** The kit's rules, in running order. */
export const RULES: readonly Rule[] = [
  ...handshakeRules,
  ...framingRules,
  ...sequenceRules,
  ...resumeRules,
  ...requestRules,
  ...heartbeatRules,
]
