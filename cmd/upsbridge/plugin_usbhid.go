package main

import _ "github.com/upsbridge/upsbridge/sources/usbhid"
