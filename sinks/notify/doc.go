// Package notify holds the notification services: WeCom, DingTalk,
// Feishu/Lark, Telegram, ntfy, Gotify, Bark, Pushover, Slack, Discord,
// email, a generic webhook and exec (upsmon NOTIFYCMD compatible).
//
// Delivery (the queue on disk, retries with backoff, rate limits with
// digests, flap merging, redaction of secrets, stats) is package engine's;
// a service here only formats and sends. Each service is one file: its
// config struct embedding engine.Common, its engine.Register call, its
// Validate and NewSink, and an engine.Service whose Send turns a rendered
// engine.Message into the service's request and classifies the answer
// (engine.Transient, engine.Refused, engine.Rejected).
//
// The services share one package rather than one each so that the binary
// links all of them with one blank import, and so that a new service is a
// new file here and nothing else: no package of its own, no import to add
// to cmd/upsbridge. The engine does not depend on this package; a service
// could live anywhere that imports engine.
package notify
