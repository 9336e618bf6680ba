package main

import _ "github.com/upsbridge/upsbridge/sinks/notify"
