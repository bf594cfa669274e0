/* A C program using pthreads the ordinary way; tests/threads_c.rs builds it with
 * `cc -pthread` and runs it under `corun run --threads`, where each of its threads is a
 * coroutine. Every part prints "ok <part>" or "FAIL <part>: ..." and the exit status is the
 * number of failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(part, cond, ...)                                        \
    do {                                                              \
        if (!(cond)) {                                                \
            printf("FAIL %s: ", part);                                \
            printf(__VA_ARGS__);                                      \
            printf("\n");                                             \
            failures++;                                               \
            return;                                                   \
        }                                                             \
    } while (0)

static int os_threads(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

static struct timespec after_ms(clockid_t clock, long ms) {
    struct timespec t;
    clock_gettime(clock, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* --- a mutex + condvar work queue shared by 1,000 threads ------------------------------ */
#define WORKERS 1000
#define JOBS 20000
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_ready = PTHREAD_COND_INITIALIZER;
static int queue[JOBS], queue_len, queue_closed;
static atomic_int started, peak_threads;

static void *worker(void *arg) {
    (void)arg;
    long done = 0;
    if (atomic_fetch_add(&started, 1) + 1 == WORKERS)
        atomic_store(&peak_threads, os_threads());
    for (;;) {
        pthread_mutex_lock(&queue_lock);
        while (queue_len == 0 && !queue_closed)
            pthread_cond_wait(&queue_ready, &queue_lock);
        if (queue_len == 0) {
            pthread_mutex_unlock(&queue_lock);
            return (void *)done;
        }
        int job = queue[--queue_len];
        pthread_mutex_unlock(&queue_lock);
        done += job;
        if (job % 97 == 0)
            usleep(100);
    }
}

static void work_queue(void) {
    pthread_t threads[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        CHECK("work-queue", pthread_create(&threads[i], NULL, worker, NULL) == 0, "create %d", i);
    long expected = 0;
    for (int j = 1; j <= JOBS; j++) {
        pthread_mutex_lock(&queue_lock);
        queue[queue_len++] = j;
        pthread_cond_signal(&queue_ready);
        pthread_mutex_unlock(&queue_lock);
        expected += j;
    }
    pthread_mutex_lock(&queue_lock);
    queue_closed = 1;
    pthread_cond_broadcast(&queue_ready);
    pthread_mutex_unlock(&queue_lock);
    long total = 0;
    for (int i = 0; i < WORKERS; i++) {
        void *value;
        CHECK("work-queue", pthread_join(threads[i], &value) == 0, "join %d", i);
        total += (long)value;
    }
    CHECK("work-queue", total == expected, "jobs summed to %ld, expected %ld", total, expected);
    printf("ok work-queue (%d threads, %d OS threads while all ran)\n", WORKERS,
           atomic_load(&peak_threads));
}

/* --- the main thread (an OS thread) holds a mutex the coroutine threads wait for -------- */
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static atomic_int got_held;

static void *wait_for_held(void *arg) {
    (void)arg;
    pthread_mutex_lock(&held);
    atomic_fetch_add(&got_held, 1);
    pthread_mutex_unlock(&held);
    return NULL;
}

static void os_thread_unlock(void) {
    pthread_t t[50];
    pthread_mutex_lock(&held);
    for (int i = 0; i < 50; i++)
        pthread_create(&t[i], NULL, wait_for_held, NULL);
    usleep(100000);
    CHECK("os-thread-unlock", atomic_load(&got_held) == 0, "a thread got a held mutex");
    pthread_mutex_unlock(&held);
    for (int i = 0; i < 50; i++)
        pthread_join(t[i], NULL);
    CHECK("os-thread-unlock", atomic_load(&got_held) == 50, "%d of 50", atomic_load(&got_held));
    printf("ok os-thread-unlock\n");
}

/* --- detached threads and semaphores --------------------------------------------------- */
static sem_t finished;
static atomic_int detached_ran;

static void *detached(void *arg) {
    (void)arg;
    usleep(1000);
    atomic_fetch_add(&detached_ran, 1);
    sem_post(&finished);
    return NULL;
}

static void detached_and_semaphores(void) {
    sem_init(&finished, 0, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < 100; i++) {
        pthread_t t;
        CHECK("detached", pthread_create(&t, &attr, detached, NULL) == 0, "create");
    }
    pthread_t t;
    pthread_create(&t, NULL, detached, NULL);
    CHECK("detached", pthread_detach(t) == 0, "pthread_detach");
    for (int i = 0; i < 101; i++)
        CHECK("detached", sem_wait(&finished) == 0, "sem_wait: %s", strerror(errno));
    CHECK("detached", atomic_load(&detached_ran) == 101, "%d ran", atomic_load(&detached_ran));
    struct timespec soon = after_ms(CLOCK_REALTIME, 50);
    CHECK("semaphores", sem_timedwait(&finished, &soon) == -1 && errno == ETIMEDOUT,
          "sem_timedwait on 0 did not time out");
    sem_post(&finished);
    CHECK("semaphores", sem_trywait(&finished) == 0, "sem_trywait after a post");
    pthread_attr_destroy(&attr);
    printf("ok detached\nok semaphores\n");
}

/* --- pthread_once and key destructors --------------------------------------------------- */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_int inits, destructed;
static pthread_key_t key;

static void init_once(void) {
    usleep(20000);
    atomic_fetch_add(&inits, 1);
}
static void destructor(void *value) {
    if (value == (void *)0x1234)
        atomic_fetch_add(&destructed, 1);
}
static void *use_once_and_key(void *arg) {
    (void)arg;
    pthread_once(&once, init_once);
    pthread_setspecific(key, (void *)0x1234);
    return NULL;
}

static void once_and_keys(void) {
    pthread_key_create(&key, destructor);
    pthread_t t[100];
    for (int i = 0; i < 100; i++)
        pthread_create(&t[i], NULL, use_once_and_key, NULL);
    for (int i = 0; i < 100; i++)
        pthread_join(t[i], NULL);
    CHECK("once", atomic_load(&inits) == 1, "init ran %d times", atomic_load(&inits));
    CHECK("key-destructors", atomic_load(&destructed) == 100, "%d destructors ran",
          atomic_load(&destructed));
    printf("ok once\nok key-destructors\n");
}

/* --- pthread_exit with cleanup handlers ------------------------------------------------- */
static atomic_int cleaned;
static void cleanup(void *arg) { atomic_fetch_add(&cleaned, (int)(intptr_t)arg); }
static void leave_deep(int depth) {
    if (depth == 0)
        pthread_exit((void *)42);
    leave_deep(depth - 1);
}
static void *exits(void *arg) {
    (void)arg;
    pthread_cleanup_push(cleanup, (void *)1);
    pthread_cleanup_push(cleanup, (void *)10);
    leave_deep(5);
    pthread_cleanup_pop(0);
    pthread_cleanup_pop(0);
    return (void *)7;
}

static void exit_with_cleanup(void) {
    for (int round = 0; round < 20; round++) {
        pthread_t t;
        void *value = NULL;
        pthread_create(&t, NULL, exits, NULL);
        CHECK("pthread-exit", pthread_join(t, &value) == 0, "join");
        CHECK("pthread-exit", value == (void *)42, "value %p, expected 42", value);
    }
    CHECK("pthread-exit", atomic_load(&cleaned) == 20 * 11, "cleanup total %d, expected 220",
          atomic_load(&cleaned));
    printf("ok pthread-exit\n");
}

/* --- the join family's answers ---------------------------------------------------------- */
static void *nap(void *arg) {
    usleep(200000);
    return arg;
}
static void *join_self(void *arg) {
    (void)arg;
    return (void *)(intptr_t)pthread_join(pthread_self(), NULL);
}

static void joins(void) {
    pthread_t t;
    void *value;
    pthread_create(&t, NULL, nap, (void *)5);
    CHECK("joins", pthread_tryjoin_np(t, &value) == EBUSY, "tryjoin of a running thread");
    struct timespec soon = after_ms(CLOCK_REALTIME, 30);
    CHECK("joins", pthread_timedjoin_np(t, &value, &soon) == ETIMEDOUT, "timedjoin");
    struct timespec mono = after_ms(CLOCK_MONOTONIC, 30);
    CHECK("joins", pthread_clockjoin_np(t, &value, CLOCK_MONOTONIC, &mono) == ETIMEDOUT,
          "clockjoin");
    CHECK("joins", pthread_clockjoin_np(t, &value, CLOCK_PROCESS_CPUTIME_ID, &mono) == EINVAL,
          "clockjoin with a bad clock");
    struct timespec later = after_ms(CLOCK_REALTIME, 5000);
    CHECK("joins", pthread_timedjoin_np(t, &value, &later) == 0 && value == (void *)5,
          "timedjoin that succeeds");
    pthread_create(&t, NULL, join_self, NULL);
    pthread_join(t, &value);
    CHECK("joins", (intptr_t)value == EDEADLK, "self-join said %ld", (long)(intptr_t)value);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&t, &attr, nap, NULL);
    CHECK("joins", pthread_join(t, NULL) == EINVAL, "join of a detached thread");
    CHECK("joins", pthread_detach(t) == EINVAL, "detach of a detached thread");
    pthread_create(&t, NULL, nap, NULL);
    int cancel = pthread_cancel(t);
    pthread_join(t, NULL);
    /* glibc cancels (0); a coroutine thread says ENOTSUP. Either way the join completes. */
    CHECK("joins", cancel == 0 || cancel == ENOTSUP, "pthread_cancel said %d", cancel);
    pthread_attr_destroy(&attr);
    printf("ok joins\n");
}

/* --- names, rwlock, barrier, stack size ------------------------------------------------- */
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_barrier_t barrier;
static long shared_count;
static atomic_int serial;

/* 1 if pthread_getattr_np(pthread_self()) describes a stack that holds this frame. */
static void *own_stack(void *arg) {
    (void)arg;
    pthread_attr_t attr;
    void *addr;
    size_t size;
    char here;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        return (void *)0;
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    return (void *)(intptr_t)((char *)addr < &here && &here < (char *)addr + size && size >= (1 << 20));
}

static void *named(void *arg) {
    char name[32];
    pthread_setname_np(pthread_self(), (const char *)arg);
    pthread_getname_np(pthread_self(), name, sizeof name);
    return (void *)(intptr_t)(strcmp(name, (const char *)arg) == 0);
}
static void *rw_user(void *arg) {
    (void)arg;
    for (int i = 0; i < 200; i++) {
        pthread_rwlock_wrlock(&rw);
        long v = shared_count;
        usleep(0);
        shared_count = v + 1;
        pthread_rwlock_unlock(&rw);
        pthread_rwlock_rdlock(&rw);
        pthread_rwlock_unlock(&rw);
    }
    if (pthread_barrier_wait(&barrier) == PTHREAD_BARRIER_SERIAL_THREAD)
        atomic_fetch_add(&serial, 1);
    return NULL;
}
static void *deep_stack(void *arg) {
    (void)arg;
    volatile char big[3 << 20];
    memset((char *)big, 1, sizeof big);
    return (void *)(intptr_t)big[12345];
}

static void more(void) {
    pthread_t t;
    void *value;
    pthread_create(&t, NULL, named, "c-worker");
    pthread_join(t, &value);
    CHECK("names", value == (void *)1, "getname did not read back setname");
    CHECK("names", pthread_setname_np(pthread_self(), "a-name-far-too-long") == ERANGE,
          "a long name");
    printf("ok names\n");

    pthread_barrier_init(&barrier, NULL, 20);
    pthread_t t20[20];
    for (int i = 0; i < 20; i++)
        pthread_create(&t20[i], NULL, rw_user, NULL);
    for (int i = 0; i < 20; i++)
        pthread_join(t20[i], NULL);
    CHECK("rwlock", shared_count == 20 * 200, "count %ld", shared_count);
    CHECK("barrier", atomic_load(&serial) == 1, "%d serial threads", atomic_load(&serial));
    pthread_barrier_destroy(&barrier);
    printf("ok rwlock\nok barrier\n");

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 8 << 20);
    pthread_create(&t, &attr, deep_stack, NULL);
    pthread_join(t, &value);
    CHECK("stack-size", value == (void *)1, "a 3 MiB frame in an 8 MiB thread");
    pthread_create(&t, &attr, own_stack, NULL);
    pthread_join(t, &value);
    CHECK("stack-size", value == (void *)1, "pthread_getattr_np does not describe the stack");
    pthread_attr_destroy(&attr);
    printf("ok stack-size\n");
}

/* --- mutex kinds, timed waits and their errors (run in a thread: a coroutine under corun) -- */
static pthread_mutex_t errorcheck, recursive;
static pthread_mutex_t plain = PTHREAD_MUTEX_INITIALIZER;

static void *unlock_other(void *arg) { return (void *)(intptr_t)pthread_mutex_unlock(arg); }
static void *trylock_other(void *arg) { return (void *)(intptr_t)pthread_mutex_trylock(arg); }

static void *kinds_in_thread(void *arg) {
    (void)arg;
    const char *part = "mutex-kinds";
    pthread_t t;
    void *value;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&errorcheck, &attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&recursive, &attr);
    pthread_mutexattr_destroy(&attr);
    int failed = 0;
#define KCHECK(cond, what)                      \
    do {                                        \
        if (!(cond)) {                          \
            printf("FAIL %s: %s\n", part, what); \
            failed++;                           \
        }                                       \
    } while (0)
    KCHECK(pthread_mutex_unlock(&errorcheck) == EPERM, "errorcheck unlock while unlocked");
    KCHECK(pthread_mutex_lock(&errorcheck) == 0, "errorcheck lock");
    KCHECK(pthread_mutex_lock(&errorcheck) == EDEADLK, "errorcheck relock");
    KCHECK(pthread_mutex_trylock(&errorcheck) == EBUSY, "errorcheck trylock by the owner");
    pthread_create(&t, NULL, unlock_other, &errorcheck);
    pthread_join(t, &value);
    KCHECK((intptr_t)value == EPERM, "errorcheck unlock by another thread");
    KCHECK(pthread_mutex_unlock(&errorcheck) == 0, "errorcheck unlock");
    for (int i = 0; i < 3; i++)
        KCHECK(pthread_mutex_lock(&recursive) == 0, "recursive lock");
    KCHECK(pthread_mutex_trylock(&recursive) == 0, "recursive trylock by the owner");
    pthread_create(&t, NULL, trylock_other, &recursive);
    pthread_join(t, &value);
    KCHECK((intptr_t)value == EBUSY, "recursive trylock by another thread");
    for (int i = 0; i < 4; i++)
        KCHECK(pthread_mutex_unlock(&recursive) == 0, "recursive unlock");
    KCHECK(pthread_mutex_unlock(&recursive) == EPERM, "recursive unlock once too often");

    pthread_mutex_lock(&plain);
    pthread_create(&t, NULL, trylock_other, &plain);
    pthread_join(t, &value);
    KCHECK((intptr_t)value == EBUSY, "trylock of a held mutex");
    struct timespec soon = after_ms(CLOCK_REALTIME, 30);
    struct timespec mono = after_ms(CLOCK_MONOTONIC, 30);
    KCHECK(pthread_mutex_timedlock(&errorcheck, &soon) == 0, "timedlock of a free mutex");
    pthread_mutex_unlock(&errorcheck);
    pthread_mutex_lock(&errorcheck);
    KCHECK(pthread_mutex_timedlock(&errorcheck, &soon) == EDEADLK, "errorcheck timedlock by the owner");
    pthread_mutex_unlock(&errorcheck);
    pthread_mutex_unlock(&plain);

    /* A condvar on CLOCK_MONOTONIC times out; a bad clock or bad nanoseconds are EINVAL. */
    pthread_condattr_t cattr;
    pthread_cond_t cond;
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&cond, &cattr);
    pthread_condattr_destroy(&cattr);
    pthread_mutex_lock(&plain);
    KCHECK(pthread_cond_timedwait(&cond, &plain, &mono) == ETIMEDOUT, "monotonic cond timeout");
    KCHECK(pthread_cond_clockwait(&cond, &plain, CLOCK_PROCESS_CPUTIME_ID, &mono) == EINVAL,
           "cond clockwait with a bad clock");
    struct timespec bad = {.tv_sec = mono.tv_sec, .tv_nsec = 1000000000L};
    KCHECK(pthread_cond_timedwait(&cond, &plain, &bad) == EINVAL, "cond timedwait, bad nanoseconds");
    struct timespec past = {.tv_sec = 1, .tv_nsec = 0};
    KCHECK(pthread_cond_timedwait(&cond, &plain, &past) == ETIMEDOUT, "cond timedwait in the past");
    pthread_mutex_unlock(&plain);
    pthread_cond_destroy(&cond);

    sem_t sem;
    sem_init(&sem, 0, 0);
    KCHECK(sem_timedwait(&sem, &bad) == -1 && errno == EINVAL, "sem_timedwait, bad nanoseconds");
    KCHECK(sem_timedwait(&sem, &past) == -1 && errno == ETIMEDOUT, "sem_timedwait in the past");
    KCHECK(sem_trywait(&sem) == -1 && errno == EAGAIN, "sem_trywait on 0");
    sem_destroy(&sem);

    pthread_rwlock_t rwl = PTHREAD_RWLOCK_INITIALIZER;
    KCHECK(pthread_rwlock_wrlock(&rwl) == 0, "wrlock");
    KCHECK(pthread_rwlock_wrlock(&rwl) == EDEADLK, "wrlock by the writer");
    KCHECK(pthread_rwlock_rdlock(&rwl) == EDEADLK, "rdlock by the writer");
    KCHECK(pthread_rwlock_tryrdlock(&rwl) == EBUSY, "tryrdlock by the writer");
    KCHECK(pthread_rwlock_trywrlock(&rwl) == EBUSY, "trywrlock by the writer");
    KCHECK(pthread_rwlock_unlock(&rwl) == 0, "writer unlock");
    KCHECK(pthread_rwlock_rdlock(&rwl) == 0 && pthread_rwlock_rdlock(&rwl) == 0, "two read locks");
    KCHECK(pthread_rwlock_trywrlock(&rwl) == EBUSY, "trywrlock while read");
    KCHECK(pthread_rwlock_timedwrlock(&rwl, &past) == ETIMEDOUT, "timedwrlock while read");
    pthread_rwlock_unlock(&rwl);
    pthread_rwlock_unlock(&rwl);
#undef KCHECK
    return (void *)(intptr_t)failed;
}

static void mutex_kinds(void) {
    pthread_t t;
    void *failed;
    pthread_create(&t, NULL, kinds_in_thread, NULL);
    pthread_join(t, &failed);
    CHECK("mutex-kinds", failed == NULL, "%ld checks failed", (long)(intptr_t)failed);
    printf("ok mutex-kinds\n");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    work_queue();
    os_thread_unlock();
    detached_and_semaphores();
    once_and_keys();
    exit_with_cleanup();
    joins();
    more();
    mutex_kinds();
    printf(failures ? "%d FAILED\n" : "all ok\n", failures);
    return failures;
}
