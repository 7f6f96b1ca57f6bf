"""Pushes to any web page: bind tokens, group membership, socket counts, and the push vocabulary
(push to a uid, a group or everyone; join and leave groups; online and count queries) that HTTP and
the TCP port share. docs/push.md is the user's side of it."""
