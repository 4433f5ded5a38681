/* static_true: a statically linked program (built with -static), for the "is this command
 * dynamically linked" check of supervisor/heapmon.c: LD_PRELOAD cannot reach it. */
int main(void)
{
    return 0;
}
