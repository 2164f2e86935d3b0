package java.lang;

/**
 * Not part of Java Card: javac needs this class to tell checked from unchecked exceptions.
 * Applet code that names it is rejected by the subset check (scripts/jcsubset).
 */
public class Error extends Throwable {
    public Error() {
    }
}
