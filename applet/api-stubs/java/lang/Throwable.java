package java.lang;

/** Java Card's java.lang.Throwable: no message, no stack trace. */
public class Throwable {
    public Throwable() {
    }
}
