package nut

import "log/slog"

type slogLogger = slog.Logger

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
