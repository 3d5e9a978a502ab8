server/console.o: server/console.c server/console.h
server/console.h:
