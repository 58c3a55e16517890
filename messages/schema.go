package messages

import "embed"

// Schemas holds the JSON Schemas (draft 2020-12) of the wire contract, so
// other systems can load them from this Go module instead of copying them:
//
//   - schema/command.schema.json: the plain stop command
//   - schema/command-cloudevent.schema.json: the command as a structured CloudEvent
//   - schema/result.schema.json: the result event
//   - schema/control.schema.json: a fleet pause or resume (control event)
//
// Each schema's $id is its path under
// https://github.com/bccstop/bccstop/messages/, and command-cloudevent refers
// to command by that relative path: register every file under its $id to
// resolve references offline. asyncapi.yaml, beside this file, describes
// the channels that carry them.
//
//go:embed schema/*.json
var Schemas embed.FS
