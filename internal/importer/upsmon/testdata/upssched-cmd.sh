#!/bin/sh
case $1 in
	onbatt)
		logger -t upssched-cmd "UPS running on battery for 5 minutes: forcing shutdown"
		/usr/sbin/upsmon -c fsd
		;;
	stop-media)
		docker stop plex
		;;
	*)
		logger -t upssched-cmd "Unrecognized command: $1"
		;;
esac
