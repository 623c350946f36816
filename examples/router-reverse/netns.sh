#!/bin/sh
# examples/router-reverse/netns.sh: runs the router-reverse example for real, as
# root, in two network namespaces; see ../router/netns.sh, which does the work.
exec "$(dirname "$0")/../router/netns.sh" router-reverse
