/* Pipe ping-pong for the scheduler-hook cost benchmark (scripts/bench_sched.sh): two processes (or, with --threads,
 * two threads of one process) pass one byte back and forth ROUNDS times; every pass is a wakeup and, on one CPU
 * (taskset), a context switch. Prints nanoseconds per pass. With a GO file it first prints its PID and waits for the
 * file to exist, so that a loader can register the process before the timed part.
 *   pingpong ROUNDS [--threads] [--go FILE] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int a_to_b[2], b_to_a[2];
static long rounds;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void echo_side(void) {
  char c;
  for (long i = 0; i < rounds; i++) {
    if (read(a_to_b[0], &c, 1) != 1) die("read");
    if (write(b_to_a[1], &c, 1) != 1) die("write");
  }
}

static void *echo_thread(void *arg) {
  (void)arg;
  echo_side();
  return NULL;
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: pingpong ROUNDS [--threads] [--go FILE]\n");
    return 2;
  }
  rounds = atol(argv[1]);
  int threads = 0;
  const char *go = NULL;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--threads")) threads = 1;
    else if (!strcmp(argv[i], "--go") && i + 1 < argc) go = argv[++i];
  }
  if (pipe(a_to_b) || pipe(b_to_a)) die("pipe");
  if (go) {
    printf("pid %d\n", getpid());
    fflush(stdout);
    while (access(go, F_OK) != 0) usleep(10000);
  }
  pid_t child = -1;
  pthread_t thread;
  if (threads) {
    if (pthread_create(&thread, NULL, echo_thread, NULL)) die("pthread_create");
  } else {
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      echo_side();
      _exit(0);
    }
  }
  char c = 'x';
  double start = now_ns();
  for (long i = 0; i < rounds; i++) {
    if (write(a_to_b[1], &c, 1) != 1) die("write");
    if (read(b_to_a[0], &c, 1) != 1) die("read");
  }
  double elapsed = now_ns() - start;
  if (threads) pthread_join(thread, NULL);
  else waitpid(child, NULL, 0);
  printf("ns_per_pass %.1f\n", elapsed / (2.0 * rounds));
  return 0;
}
