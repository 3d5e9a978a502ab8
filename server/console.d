server/console: server/console.c server/console.h
server/console.h:
