#!/bin/sh
echo "$GREETING from $(uname -m), $(cat /app/built-on)"
