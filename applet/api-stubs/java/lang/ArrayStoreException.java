package java.lang;

/** The Java Card 3.0.x API class of this name (an API stub for compiling, not an implementation). */
public class ArrayStoreException extends RuntimeException {
    public ArrayStoreException() {
    }
}
